package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParseKeyPEM returns the private key of a PEM text: PKCS#8 ("PRIVATE
// KEY"), SEC 1 ("EC PRIVATE KEY", what openssl ecparam writes) or PKCS#1
// ("RSA PRIVATE KEY"). Other blocks (openssl's "EC PARAMETERS" before the
// key, a certificate beside it) are skipped; with no key block the error
// names the first block's type. An encrypted key is refused with how to
// decrypt it. The errors never hold key material.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	first := ""
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		switch {
		case block == nil && first == "":
			return nil, errors.New("no PEM block")
		case block == nil:
			return nil, fmt.Errorf("a PEM %q block, not a private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", first)
		case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
			return nil, errors.New("the key is encrypted: store it unencrypted (openssl pkey -in KEY -out NEW, then replace KEY with NEW, mode 0600)")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			if first == "" {
				first = block.Type
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("its %s block does not parse: %w", block.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unusable private key type %T", k)
		}
		return s, nil
	}
}
