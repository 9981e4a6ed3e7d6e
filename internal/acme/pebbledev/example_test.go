package pebbledev_test

import (
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/pryv/pryv-tls/internal/acme/pebbledev"
)

// Start Pebble outside a test, as `pryv-tls demo --acme` does, and point an
// ACME client at it: letsEncrypt.directoryUrl is p.DirectoryURL,
// directoryCaFile p.CAFile, http01Port p.HTTPPort.
func ExampleStart() {
	p, err := pebbledev.Start(pebbledev.Options{
		// Pebble writes a few lines per ACME request: at Debug, an Info
		// logger shows none of them, a Debug one all.
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
		LogLevel: slog.LevelDebug,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	resp, err := p.HTTPClient().Get(p.DirectoryURL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var dir struct {
		NewOrder string `json:"newOrder"`
		Meta     struct {
			Profiles map[string]string `json:"profiles"`
		} `json:"meta"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, dir.NewOrder != "", len(dir.Meta.Profiles))

	if err := p.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: 200 OK true 3
}
