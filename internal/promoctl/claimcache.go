package promoctl

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
	"promocodes.dev/promo-operator/internal/routing"
)

// setClaims is what a preflight needs of one PromoCodeSet: who it is, and
// its entries' folded codes and affiliates. It is exact for the set's
// resourceVersion, which changes with any write to the set, status included.
type setClaims struct {
	UID, ResourceVersion string
	Namespace, Name      string
	Import               string // its ImportLabel, "" when none
	Offer                string
	Codes                []byte // folded codes, each followed by '\n'
	Affiliates           []int64
	Rejected             []byte // status.rejectedCodes, folded, each followed by '\n'
}

func claimsOf(s *trackingv1alpha1.PromoCodeSet) *setClaims {
	sc := &setClaims{UID: string(s.UID), ResourceVersion: s.ResourceVersion, Namespace: s.Namespace, Name: s.Name,
		Import: s.Labels[ImportLabel], Offer: s.Spec.OfferRef.Name, Affiliates: make([]int64, len(s.Spec.Codes))}
	n := 0
	for _, e := range s.Spec.Codes {
		n += len(e.Code) + 1
	}
	sc.Codes = make([]byte, 0, n)
	for i, e := range s.Spec.Codes {
		sc.Codes = append(append(sc.Codes, routing.Fold(e.Code)...), '\n')
		sc.Affiliates[i] = e.AffiliateID
	}
	for _, r := range s.Status.RejectedCodes {
		sc.Rejected = append(append(sc.Rejected, routing.Fold(r.Code)...), '\n')
	}
	return sc
}

// each yields the set's entries not rejected: folded code (valid only
// during the call) and affiliate.
func (sc *setClaims) each(yield func(folded []byte, affiliate int64)) {
	rejected := map[string]bool{}
	for r := range bytes.SplitSeq(sc.Rejected, []byte{'\n'}) {
		if len(r) > 0 {
			rejected[string(r)] = true
		}
	}
	rest := sc.Codes
	for i := 0; len(rest) > 0 && i < len(sc.Affiliates); i++ {
		k := bytes.IndexByte(rest, '\n')
		if k < 0 {
			return
		}
		if code := rest[:k]; len(rejected) == 0 || !rejected[string(code)] {
			yield(code, sc.Affiliates[i])
		}
		rest = rest[k+1:]
	}
}

// claimCacheVersion changes whenever setClaims or its meaning does.
const claimCacheVersion = 1

type claimCacheFile struct {
	Version int
	Sets    []*setClaims
}

var unsafeInPath = regexp.MustCompile(`[^A-Za-z0-9.\-]`)

// ClaimCacheFile is where the claims of the PromoCodeSets of the cluster at
// host are kept between runs, under kubectl's --cache-dir; "" when dir is "".
func ClaimCacheFile(dir, host string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "kubectl-promo", unsafeInPath.ReplaceAllString(host, "_"), "promocodeset-claims.gob")
}

// loadClaims reads the cache; a missing, unreadable or older file is an
// empty cache (it only saves reading sets again).
func loadClaims(file string) map[string]*setClaims {
	out := map[string]*setClaims{}
	b, err := os.ReadFile(file)
	if err != nil {
		return out
	}
	var f claimCacheFile
	if gob.NewDecoder(bytes.NewReader(b)).Decode(&f) != nil || f.Version != claimCacheVersion {
		return out
	}
	for _, sc := range f.Sets {
		out[sc.UID] = sc
	}
	return out
}

// saveClaims replaces the cache with sets, atomically (a concurrent run
// reads the old file or the new one, never half of one).
func saveClaims(file string, sets []*setClaims) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".claims-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // after the rename, nothing to remove
	if err := gob.NewEncoder(tmp).Encode(claimCacheFile{Version: claimCacheVersion, Sets: sets}); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// clusterSetClaims returns the claims of every PromoCodeSet in the cluster.
// With a cache file, it lists only the sets' metadata and reads again only
// the sets whose resourceVersion is not the cached one (after an import,
// the sets it wrote): a preflight against a million codes reads the codes
// that changed since the last run, not all of them. Without one, or when
// most sets changed, it reads every set, page by page. A cache that cannot
// be written is reported to warn and costs only time.
func clusterSetClaims(ctx context.Context, c client.Client, cacheFile string, warn func(error)) ([]*setClaims, error) {
	var out []*setClaims
	readAll := func() error {
		out = out[:0]
		return listSets(ctx, c, func(s *trackingv1alpha1.PromoCodeSet) { out = append(out, claimsOf(s)) })
	}
	if cacheFile == "" {
		return out, readAll()
	}
	var meta metav1.PartialObjectMetadataList
	meta.SetGroupVersionKind(trackingv1alpha1.GroupVersion.WithKind("PromoCodeSetList"))
	if err := c.List(ctx, &meta); err != nil {
		return nil, fmt.Errorf("listing PromoCodeSets: %w", err)
	}
	cached := loadClaims(cacheFile)
	var missing []types.NamespacedName
	for _, m := range meta.Items {
		if sc := cached[string(m.UID)]; sc != nil && sc.ResourceVersion == m.ResourceVersion {
			out = append(out, sc)
		} else {
			missing = append(missing, types.NamespacedName{Namespace: m.Namespace, Name: m.Name})
		}
	}
	switch {
	case len(missing) == 0:
	case len(missing) > len(meta.Items)/2: // one paged list costs less than a GET each
		if err := readAll(); err != nil {
			return nil, err
		}
	default:
		var mu sync.Mutex
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for _, key := range missing {
			g.Go(func() error {
				var s trackingv1alpha1.PromoCodeSet
				if err := c.Get(gctx, key, &s); apierrors.IsNotFound(err) {
					return nil // deleted since the list
				} else if err != nil {
					return fmt.Errorf("reading PromoCodeSet %s: %w", key, err)
				}
				sc := claimsOf(&s)
				mu.Lock()
				defer mu.Unlock()
				out = append(out, sc)
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 || len(cached) != len(out) {
		if err := saveClaims(cacheFile, out); err != nil && warn != nil {
			warn(fmt.Errorf("writing the cache %s (the next preflight reads every set again): %w", cacheFile, err))
		}
	}
	return out, nil
}
