package promoctl

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// ImportLabel marks the PromoCodeSets of one import; its value is the set prefix.
// A re-import with the same prefix owns exactly the sets carrying it.
const ImportLabel = "tracking.promocodes.dev/import"

// FieldManager is the server-side apply field manager of the plugin.
const FieldManager = "kubectl-promo"

// fillTarget is the average number of entries per set the plan aims at,
// far below the 5,000 limit: the API server handles a whole set on every
// write to it, so an edit, a re-import that changes one line, and the
// controller's status write each cost in proportion to the set's size, where
// more sets cost an import little. Measured by the catalogue bench at 1M
// codes (20 offers): 4,096 (320 sets of ~3,100) imported in 81 s with
// one-entry edits servable at p50 175 ms / p99 550 ms; 1,024 (1,280 sets of
// ~780) in 100 s at p50 57 ms / p99 178 ms.
const fillTarget = 1024

// maxSetBytes bounds a set's estimated stored size (its JSON; spec.codes is
// an atomic list, so server-side apply records no managed fields per entry),
// below etcd's default 1.5 MiB request limit with room for metadata and
// status.
const maxSetBytes = 1_150_000

var prefixRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidatePrefix checks a set prefix: it is a label value and the start of object names.
func ValidatePrefix(p string) error {
	if len(p) > 58 || !prefixRE.MatchString(p) {
		return fmt.Errorf("set prefix %q: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 58 characters", p)
	}
	return nil
}

// Plan is the desired PromoCodeSets of one import.
type Plan struct {
	Namespace string
	Offer     string
	Prefix    string
	Buckets   int
	Sets      []*trackingv1alpha1.PromoCodeSet // ordered by name
}

// bucketOf places a folded code in one of n buckets (n a power of two). The
// hash is FNV-1a with a 64-bit finalizer: stable across versions and runs, so
// a code stays in its set as long as the number of sets does not change.
func bucketOf(folded string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(folded))
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return int(x & uint64(n-1))
}

// entrySize estimates the bytes one entry costs stored: its JSON.
func entrySize(r *Row) int {
	n := len(r.Code) + 50 // {"affiliateID":..,"code":".."},
	if r.hasStart {
		n += 36
	}
	if r.hasEnd {
		n += 34
	}
	if r.Description != "" {
		n += len(r.Description) + len(r.Description)/8 + 18 // JSON escaping room
	}
	return n
}

// BuildPlan splits rows into sets deterministically: the number of sets is the
// smallest power of two giving at most fillTarget entries and maxSetBytes per
// set on average, doubled while any set would exceed 5,000 entries or
// maxSetBytes; each code goes to the set its folded code hashes to. The plan
// depends on the file alone (not on line order or the cluster), so importing
// the same file again plans the same objects, and an added or removed line
// changes one set.
func BuildPlan(rows []Row, namespace, offer, prefix string) *Plan {
	total := 0
	for i := range rows {
		total += entrySize(&rows[i])
	}
	n := 1
	for n*fillTarget < len(rows) || n*maxSetBytes*8/10 < total {
		n *= 2
	}
	var buckets [][]int32
	for {
		buckets = make([][]int32, n)
		size := make([]int, n)
		over := false
		for i := range rows {
			b := bucketOf(rows[i].Folded, n)
			buckets[b] = append(buckets[b], int32(i))
			size[b] += entrySize(&rows[i])
			if len(buckets[b]) > trackingv1alpha1.MaxPromoCodeSetEntries || size[b] > maxSetBytes {
				over = true
			}
		}
		if !over {
			break
		}
		n *= 2
	}
	p := &Plan{Namespace: namespace, Offer: offer, Prefix: prefix, Buckets: n}
	// Catalogues share dates: one *metav1.Time per distinct instant (entries
	// are never modified in place; copies are deep).
	times := map[int64]*metav1.Time{}
	for b, idx := range buckets {
		if len(idx) == 0 {
			continue
		}
		slices.SortFunc(idx, func(a, b int32) int { return cmp.Compare(rows[a].Folded, rows[b].Folded) })
		set := newSet(namespace, SetName(prefix, b, n), offer, prefix)
		set.Spec.Codes = make([]trackingv1alpha1.PromoCodeSetEntry, len(idx))
		for j, i := range idx {
			set.Spec.Codes[j] = entryOf(&rows[i], times)
		}
		p.Sets = append(p.Sets, set)
	}
	return p
}

// SetName is the name of bucket b of n: <prefix>-NNNN, wide enough for n.
func SetName(prefix string, b, n int) string {
	w := max(4, len(strconv.Itoa(n-1)))
	return fmt.Sprintf("%s-%0*d", prefix, w, b)
}

func newSet(namespace, name, offer, prefix string) *trackingv1alpha1.PromoCodeSet {
	return &trackingv1alpha1.PromoCodeSet{
		TypeMeta: metav1.TypeMeta{APIVersion: trackingv1alpha1.GroupVersion.String(), Kind: "PromoCodeSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: map[string]string{ImportLabel: prefix},
		},
		Spec: trackingv1alpha1.PromoCodeSetSpec{OfferRef: trackingv1alpha1.LocalOfferReference{Name: offer}},
	}
}

func entryOf(r *Row, times map[int64]*metav1.Time) trackingv1alpha1.PromoCodeSetEntry {
	at := func(sec int64) *metav1.Time {
		t, ok := times[sec]
		if !ok {
			mt := metav1.NewTime(time.Unix(sec, 0).UTC())
			t = &mt
			times[sec] = t
		}
		return t
	}
	e := trackingv1alpha1.PromoCodeSetEntry{Code: r.Code, AffiliateID: r.AffiliateID, Description: r.Description}
	if r.hasStart {
		e.StartDate = at(r.Start)
	}
	if r.hasEnd {
		e.EndDate = at(r.End)
	}
	return e
}
