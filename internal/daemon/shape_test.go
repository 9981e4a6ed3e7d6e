package daemon

import "testing"

// TestSubsystemsInOrder: the core is the list of subsystems, control
// socket first and front last, and nothing else starts it.
func TestSubsystemsInOrder(t *testing.T) {
	cfg := mustConfig(t, "http:\n  port: 0\n  ip: 127.0.0.1\n")
	c, err := newCore(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	var names []string
	for _, s := range c.subs {
		names = append(names, s.Name())
	}
	want := []string{"opening the control socket", "loading the certificates", "starting the metrics listener",
		"loading the materialised certificates", "starting the DNS server", "preparing ACME",
		"checking the node certificate", "opening PlatformDB", "checking for a certificate to serve", "starting the front"}
	if len(names) != len(want) {
		t.Fatalf("subsystems %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("subsystem %d is %q, want %q (all: %q)", i, names[i], want[i], names)
		}
	}
}
