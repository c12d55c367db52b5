package promoctl

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// Alphabet is what generated codes are made of: upper-case letters and digits
// without 0, O, 1 and I, which read alike. 32 symbols: 5 bits each.
const Alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// ExistingCodes returns the folded code of every PromoCode and every
// PromoCodeSet entry in the cluster (all namespaces).
func ExistingCodes(ctx context.Context, c client.Client) (map[string]struct{}, error) {
	out := map[string]struct{}{}
	var pcs trackingv1alpha1.PromoCodeList
	if err := c.List(ctx, &pcs); err != nil {
		return nil, fmt.Errorf("listing PromoCodes in every namespace: %w", err)
	}
	for i := range pcs.Items {
		out[routing.Fold(pcs.Items[i].Spec.Code)] = struct{}{}
	}
	err := listSets(ctx, c, func(s *trackingv1alpha1.PromoCodeSet) {
		for _, e := range s.Spec.Codes {
			out[routing.Fold(e.Code)] = struct{}{}
		}
	})
	return out, err
}

// Generator draws random codes.
type Generator struct {
	Count  int
	Length int    // random characters after the prefix
	Prefix string // letters and digits, may be empty
	// Rand is the entropy source (crypto/rand.Reader when nil).
	Rand io.Reader
}

// space returns how many distinct codes Length symbols give (capped).
func (g *Generator) space() float64 { return math.Pow(float64(len(Alphabet)), float64(g.Length)) }

// Check validates the request before anything is read from the cluster.
func (g *Generator) Check() error {
	switch {
	case g.Count < 1:
		return fmt.Errorf("--count must be at least 1")
	case g.Length < 1:
		return fmt.Errorf("--length must be at least 1")
	case g.Prefix != "" && !routing.ValidCode(g.Prefix):
		return fmt.Errorf("--prefix %q: Latin letters and digits only", g.Prefix)
	case len(g.Prefix)+g.Length > routing.MaxCodeLen:
		return fmt.Errorf("--prefix (%d characters) and --length %d make codes longer than %d characters", len(g.Prefix), g.Length, routing.MaxCodeLen)
	}
	// Keep at least half of the space free, so drawing stays fast and a guess
	// is unlikely to hit a code.
	if float64(g.Count)*2 > g.space() {
		return fmt.Errorf("--length %d gives %.0f codes over the %d-symbol alphabet %s: too few for --count %d (at most half of them may be drawn); use a longer --length",
			g.Length, g.space(), len(Alphabet), Alphabet, g.Count)
	}
	return nil
}

// Generate draws Count codes, none of them (folded) in taken nor twice in the
// batch. taken is not modified.
func (g *Generator) Generate(taken map[string]struct{}) ([]string, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	r := g.Rand
	if r == nil {
		r = rand.Reader
	}
	// Existing codes of this shape (the prefix, then Length symbols of the
	// alphabet) lower the room left.
	prefix := routing.Fold(g.Prefix)
	shaped := 0
	for c := range taken {
		if g.fits(prefix, c) {
			shaped++
		}
	}
	if free := g.space() - float64(shaped); float64(g.Count)*2 > free {
		return nil, fmt.Errorf("--prefix %q --length %d leaves too little room: %d codes of that shape exist in the cluster, %.0f are free, and at most half of them may be drawn; use a longer --length",
			g.Prefix, g.Length, shaped, free)
	}
	seen := make(map[string]struct{}, g.Count)
	out := make([]string, 0, g.Count)
	buf := make([]byte, len(g.Prefix)+g.Length)
	copy(buf, routing.Fold(g.Prefix))
	src := &symbols{r: r}
	for attempts := 0; len(out) < g.Count; attempts++ {
		if attempts > 100*g.Count+1000 {
			return nil, fmt.Errorf("drew %d codes in %d attempts: the space is too crowded; use a longer --length", len(out), attempts)
		}
		for i := len(g.Prefix); i < len(buf); i++ {
			s, err := src.next()
			if err != nil {
				return nil, fmt.Errorf("reading random bytes: %w", err)
			}
			buf[i] = Alphabet[s]
		}
		code := string(buf)
		if _, dup := taken[code]; dup {
			continue
		}
		if _, dup := seen[code]; dup {
			continue
		}
		seen[code] = struct{}{}
		out = append(out, code)
	}
	return out, nil
}

// fits reports whether folded code c is the prefix then Length alphabet symbols.
func (g *Generator) fits(prefix, c string) bool {
	if len(c) != len(prefix)+g.Length || c[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(c); i++ {
		if strings.IndexByte(Alphabet, c[i]) < 0 {
			return false
		}
	}
	return true
}

// symbols yields uniform indexes into Alphabet by rejection sampling: a byte
// is used only below the largest multiple of len(Alphabet), so no symbol is
// more likely than another (no modulo bias).
type symbols struct {
	r   io.Reader
	buf [256]byte
	pos int
	n   int
}

var symbolLimit = byte(256 - 256%len(Alphabet) - 1) // bytes above are rejected; 255 when the alphabet divides 256

func (s *symbols) next() (int, error) {
	for {
		if s.pos == s.n {
			if _, err := io.ReadFull(s.r, s.buf[:]); err != nil {
				return 0, err
			}
			s.pos, s.n = 0, len(s.buf)
		}
		b := s.buf[s.pos]
		s.pos++
		if 256%len(Alphabet) == 0 || b <= symbolLimit {
			return int(b) % len(Alphabet), nil
		}
	}
}

// RandomSuffix returns n random lower-case alphanumerics for names.
func RandomSuffix(n int) (string, error) {
	const lower = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, n)
	for i := range b {
		x, err := rand.Int(rand.Reader, big.NewInt(int64(len(lower))))
		if err != nil {
			return "", err
		}
		b[i] = lower[x.Int64()]
	}
	return string(b), nil
}
