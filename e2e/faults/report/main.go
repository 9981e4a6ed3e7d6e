// Command report renders docs/RELIABILITY.md from the rows the fault
// scenarios wrote (see package faults and e2e/faults/run).
//
//	go run ./e2e/faults/report -in DIR -out docs/RELIABILITY.md [-command ...] [-machine ...] [-elapsed ...]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pryv/pryv-tls/e2e/faults"
	"github.com/pryv/pryv-tls/internal/atomicfile"
)

func main() {
	in := flag.String("in", "", "directory of the *.jsonl rows ($"+faults.EnvDir+" of the run)")
	out := flag.String("out", "docs/RELIABILITY.md", "file to write")
	var m faults.Meta
	flag.StringVar(&m.Command, "command", "e2e/faults/run", "how the file is made, for its header")
	flag.StringVar(&m.Machine, "machine", "", "machine line of the header")
	flag.StringVar(&m.Elapsed, "elapsed", "", "run time line of the header")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "report: -in DIR is required (the directory the scenarios wrote their rows to)")
		os.Exit(2)
	}
	rows, err := faults.Load(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	if len(rows) == 0 {
		fmt.Fprintf(os.Stderr, "report: no rows in %s: did the scenarios run with $%s set?\n", *in, faults.EnvDir)
		os.Exit(1)
	}
	// Whole or not at all: an interrupted run leaves the old file.
	if err := atomicfile.Write(*out, faults.Render(rows, m), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	fmt.Printf("report: %d rows -> %s\n", len(rows), *out)
}
