package config

// PlatformDBEnabled reports whether this core runs PlatformDB. It does when
// something needs the shared store: built-in ACME, the embedded DNS server, or
// an atRestKey (set to keep imported certificates in the store). A plain
// Strategy B or C core without any of these binds no etcd ports.
func (c *Config) PlatformDBEnabled() bool {
	return c.LetsEncrypt.Enabled || c.LetsEncrypt.AtRestKey != "" || c.DNS.Active
}
