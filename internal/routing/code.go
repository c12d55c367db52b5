// Package routing is the pure core of promo-operator: it folds codes, resolves
// conflicts between PromoCodes and between Offers (SPEC §2), compiles the
// routing table trackers serve from, and answers the attribution lookup of
// SPEC §3. It does no I/O: the controllers, the webhook, the route server and
// the tracker all ask it, so every rule lives in one place.
package routing

// MaxCodeLen is the longest accepted promo code.
const MaxCodeLen = 64

// ValidCode reports whether s is 1..64 ASCII letters and digits.
func ValidCode(s string) bool {
	if len(s) == 0 || len(s) > MaxCodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		default:
			return false
		}
	}
	return true
}

// Fold returns the case-insensitive form of a code: ASCII letters upper-cased.
// Codes that compare equal after Fold are one code (SPEC §2 rule 1).
func Fold(code string) string {
	for i := 0; i < len(code); i++ {
		if c := code[i]; 'a' <= c && c <= 'z' {
			var buf [MaxCodeLen]byte
			if len(code) > len(buf) {
				b := []byte(code)
				foldBytes(b)
				return string(b)
			}
			n := copy(buf[:], code)
			foldBytes(buf[:n])
			return string(buf[:n])
		}
	}
	return code
}

func foldBytes(b []byte) {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
}

// foldInto validates code and writes its folded form into buf, without
// allocating. It returns false when code is not a valid code.
func foldInto(buf *[MaxCodeLen]byte, code string) (int, bool) {
	if len(code) == 0 || len(code) > MaxCodeLen {
		return 0, false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		switch {
		case '0' <= c && c <= '9', 'A' <= c && c <= 'Z':
			buf[i] = c
		case 'a' <= c && c <= 'z':
			buf[i] = c - ('a' - 'A')
		default:
			return 0, false
		}
	}
	return len(code), true
}
