package certs

import (
	"crypto/x509"
	"math/big"
	"slices"
	"time"
)

// Leaf is what the Cache keeps of a certificate's parsed leaf: what it
// ranks and indexes by, and what its readers (status, metrics, the expiry
// check) show. A parsed x509.Certificate with its public key, extensions
// and names costs 2-3 KB live; this costs ~0.2 KB. With Change.Leaf, the
// certificate served (its DER chain and private key) need not hold the
// parsed one at all: crypto/tls's server never reads Certificate.Leaf
// when the certificate comes from GetCertificate.
type Leaf struct {
	DNSNames     []string
	CommonName   string // the subject's
	Issuer       string // the issuer's common name
	SerialNumber *big.Int
	NotBefore    time.Time
	NotAfter     time.Time
}

// newLeaf keeps what the Cache needs of x (nil: nil). It holds nothing of
// x itself: x509 copies every string it parses, so the parsed certificate
// can be freed.
func newLeaf(x *x509.Certificate) *Leaf {
	if x == nil {
		return nil
	}
	return &Leaf{
		DNSNames:     slices.Clone(x.DNSNames),
		CommonName:   x.Subject.CommonName,
		Issuer:       x.Issuer.CommonName,
		SerialNumber: x.SerialNumber,
		NotBefore:    x.NotBefore,
		NotAfter:     x.NotAfter,
	}
}

// names are the names the certificate is indexed under: its DNS names,
// else its common name (what certNames reads from a parsed leaf).
func (l *Leaf) names() []string {
	switch {
	case l == nil:
		return nil
	case len(l.DNSNames) > 0:
		return l.DNSNames
	case l.CommonName != "":
		return []string{l.CommonName}
	}
	return nil
}

// The rules of newSet (set.go) on what an entry keeps: a certificate
// without a leaf never expires and names nothing.

func (l *Leaf) expired(now time.Time) bool { return l != nil && now.After(l.NotAfter) }

func (l *Leaf) newer(o *Leaf) bool { return l != nil && o != nil && l.NotBefore.After(o.NotBefore) }

func (l *Leaf) outranks(o *Leaf, now time.Time) bool {
	if el, eo := l.expired(now), o.expired(now); el != eo {
		return eo
	}
	return l.newer(o)
}
