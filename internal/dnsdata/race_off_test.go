//go:build !race

package dnsdata

const raceEnabled = false
