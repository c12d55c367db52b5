package routing

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/shopspring/decimal"
)

// Amount is a payout or revenue rule: a fixed amount, or a percent of the
// conversion amount. Decimals are exact (never float).
type Amount struct {
	Percent bool
	Value   decimal.Decimal
}

type amountJSON struct {
	Percent bool   `json:"percent,omitempty"`
	Value   string `json:"value"`
}

// MarshalJSON keeps the scale the amount was written with ("8.00").
func (a Amount) MarshalJSON() ([]byte, error) {
	return json.Marshal(amountJSON{Percent: a.Percent, Value: exact(a.Value)})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (a *Amount) UnmarshalJSON(b []byte) error {
	var j amountJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	v, err := decimal.NewFromString(j.Value)
	if err != nil {
		return err
	}
	*a = Amount{Percent: j.Percent, Value: v}
	return nil
}

func exact(d decimal.Decimal) string {
	if d.Exponent() < 0 {
		return d.StringFixed(-d.Exponent())
	}
	return d.String()
}

// For returns the amount earned for a conversion of the given order amount.
func (a Amount) For(orderAmount decimal.Decimal) decimal.Decimal {
	if !a.Percent {
		return a.Value
	}
	return orderAmount.Mul(a.Value).Shift(-2)
}

// Text returns For(orderAmount) as an exact decimal string: a fixed amount
// keeps the scale it was written with ("8.00"); a computed percentage is
// written without trailing zeros ("1.999").
func (a Amount) Text(orderAmount decimal.Decimal) string {
	if !a.Percent {
		return exact(a.Value)
	}
	return a.For(orderAmount).String()
}

// Goal is a compiled Offer goal.
type Goal struct {
	ID      int64  `json:"id"`
	Alias   string `json:"alias"`
	Status  string `json:"status"`
	Payout  Amount `json:"payout"`
	Revenue Amount `json:"revenue"`
}

// Offer is a compiled Offer. Only the Offer owning its spec.id is in a table.
type Offer struct {
	Ref      string `json:"ref"` // namespace/name
	ID       int64  `json:"id"`
	Title    string `json:"title,omitempty"`
	Currency string `json:"currency"`
	// Enabled: the Offer is Ready and has promo codes enabled.
	Enabled bool `json:"enabled"`
	// TokenSHA256 is the SHA-256 of the postback token; empty when none is required.
	TokenSHA256 []byte `json:"tokenSHA256,omitempty"`
	Goals       []Goal `json:"goals"`
	DefaultGoal int    `json:"defaultGoal"` // index into Goals
}

// RequiresToken reports whether postbacks must carry a token.
func (o *Offer) RequiresToken() bool { return len(o.TokenSHA256) != 0 }

// CheckToken compares token with the offer's token in constant time.
func (o *Offer) CheckToken(token string) bool {
	if !o.RequiresToken() {
		return true
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], o.TokenSHA256) == 1
}

// Entry is one accepted claim (a PromoCode, a PromoCodeSet entry) in the table.
type Entry struct {
	Code string `json:"code"` // as written in the spec
	// Ref is what conversions record as promo_code_ref: namespace/name of a
	// PromoCode, namespace/promocodeset/name for a set's entry (Claim.Route).
	Ref         string    `json:"ref"`
	OfferRef    string    `json:"offerRef"`
	AffiliateID int64     `json:"affiliateID"`
	Start       time.Time `json:"start,omitzero"` // inclusive; zero: unbounded
	End         time.Time `json:"end,omitzero"`   // exclusive; zero: unbounded
}

// ActiveAt reports whether the entry's dates include t.
func (e *Entry) ActiveAt(t time.Time) bool {
	return (e.Start.IsZero() || !t.Before(e.Start)) && (e.End.IsZero() || t.Before(e.End))
}

// CodeGroup is every accepted PromoCode sharing one folded code, oldest first.
// A group without entries in a Delta deletes the code.
type CodeGroup struct {
	Folded  string  `json:"folded"`
	Entries []Entry `json:"entries,omitempty"`
}

// Snapshot is a whole table on the wire and on disk.
type Snapshot struct {
	Version     string       `json:"version"`
	Offers      []Offer      `json:"offers"`
	Codes       []CodeGroup  `json:"codes"`
	Storefronts []Storefront `json:"storefronts,omitempty"`
}

// Delta changes a table: offers, code groups and storefronts are replaced whole.
type Delta struct {
	Version            string       `json:"version"`
	Offers             []Offer      `json:"offers,omitempty"`
	DeletedOffers      []string     `json:"deletedOffers,omitempty"`
	Codes              []CodeGroup  `json:"codes,omitempty"`
	Storefronts        []Storefront `json:"storefronts,omitempty"`
	DeletedStorefronts []string     `json:"deletedStorefronts,omitempty"`
}

// Storefront platforms (SPEC §8).
const (
	PlatformShopify     = "shopify"
	PlatformWooCommerce = "woocommerce"
)

// Storefront is a Ready Storefront as trackers need it (SPEC §8): the shop
// whose order webhooks a tracker accepts and the offers its codes are looked
// up on. Secret is the raw signing secret, so it travels only on the
// authenticated, TLS route stream and in the 0600 snapshot file; String and
// LogValue never show it.
type Storefront struct {
	Ref       string   `json:"ref"`      // namespace/name of the Storefront
	Platform  string   `json:"platform"` // PlatformShopify or PlatformWooCommerce
	Shop      string   `json:"shop"`     // Shopify shop domain, or WooCommerce site URL
	Secret    []byte   `json:"secret"`
	OfferRefs []string `json:"offerRefs"`           // namespace/name of Offers, in lookup order
	GoalAlias string   `json:"goalAlias,omitempty"` // empty: each offer's default goal
	Amount    string   `json:"amount"`              // "subtotal" or "total"
}

// String shows a storefront without its secret.
func (s Storefront) String() string {
	return fmt.Sprintf("Storefront{%s %s %s offers=%v secret=[redacted]}", s.Ref, s.Platform, s.Shop, s.OfferRefs)
}

// LogValue keeps the secret out of structured logs.
func (s Storefront) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", s.Ref), slog.String("platform", s.Platform),
		slog.String("shop", s.Shop), slog.Any("offerRefs", s.OfferRefs))
}

// Equal reports whether two storefronts are the same, secret included.
func (s Storefront) Equal(o Storefront) bool {
	return s.Ref == o.Ref && s.Platform == o.Platform && s.Shop == o.Shop && subtle.ConstantTimeCompare(s.Secret, o.Secret) == 1 &&
		slices.Equal(s.OfferRefs, o.OfferRefs) && s.GoalAlias == o.GoalAlias && s.Amount == o.Amount
}

// The codes live in shardCount leaves under 256 nodes of 256 leaves; a leaf
// is a slice of its codes sorted by folded code (40 bytes a code, where a Go
// map took ~77 at 1M). A delta copies only the nodes and leaves it touches: a
// set of 5,000 codes touches ~4,900 of 65,536 leaves (~8 % of the table)
// where 256 flat shards were all touched, each delta copying the whole table.
const (
	nodeCount  = 256
	nodeLeaves = 256
	shardCount = nodeCount * nodeLeaves
)

type slot struct {
	folded  string
	entries []Entry
}

type leaf = []slot

type node [nodeLeaves]leaf

// emptyNode stands for every node holding no code; it is never written.
var emptyNode = &node{}

var shardSeed = maphash.MakeSeed()

// Table is an immutable routing table. Apply returns a new table sharing
// untouched nodes and leaves, so a delta costs the size of what it touches.
type Table struct {
	version     string
	offers      map[string]*Offer      // by ref
	storefronts map[string]*Storefront // by ref
	nodes       [nodeCount]*node
	codes       int
}

func shardOf(folded string) int { return int(maphash.String(shardSeed, folded) % shardCount) }

// shardOfBytes equals shardOf(string(b)) without converting.
func shardOfBytes(b []byte) int { return int(maphash.Bytes(shardSeed, b) % shardCount) }

func (t *Table) leaf(shard int) leaf { return t.nodes[shard/nodeLeaves][shard%nodeLeaves] }

// search returns where folded is or would be in l.
func search(l leaf, folded string) (int, bool) {
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m].folded < folded {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(l) && l[lo].folded == folded
}

// searchBytes is search for string(b), without converting.
func searchBytes(l leaf, b []byte) []Entry {
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m].folded < string(b) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(l) && l[lo].folded == string(b) {
		return l[lo].entries
	}
	return nil
}

func compareSlots(a, b slot) int { return compareStrings(a.folded, b.folded) }

// interner makes equal strings share one copy: a decoded snapshot or delta
// holds a copy of a ref per entry, where the 5,000 entries of a set, and the
// codes of an offer, can share one string.
type interner struct {
	offers map[string]*Offer // refs of these are used as they are
	refs   map[string]string
}

func (in *interner) intern(s string) string {
	if o := in.offers[s]; o != nil {
		return o.Ref
	}
	if v, ok := in.refs[s]; ok {
		return v
	}
	if in.refs == nil {
		in.refs = map[string]string{}
	}
	in.refs[s] = s
	return s
}

// compact interns an entry's refs and lets its code share the folded key
// when they are equal, as most are (BenchmarkTableMemory/sets: 297 -> 229 B
// per code at 1M for the refs).
func (in *interner) compact(folded string, es []Entry) {
	for i := range es {
		e := &es[i]
		e.Ref, e.OfferRef = in.intern(e.Ref), in.intern(e.OfferRef)
		if e.Code == folded {
			e.Code = folded
		}
	}
}

// NewTable builds a table from a snapshot.
func NewTable(s Snapshot) *Table {
	t := &Table{version: s.Version, offers: make(map[string]*Offer, len(s.Offers)),
		storefronts: make(map[string]*Storefront, len(s.Storefronts))}
	in := interner{refs: make(map[string]string, len(s.Offers)+64)}
	for i := range s.Offers {
		s.Offers[i].Ref = in.intern(s.Offers[i].Ref)
		t.offers[s.Offers[i].Ref] = &s.Offers[i]
	}
	for i := range s.Storefronts {
		t.storefronts[s.Storefronts[i].Ref] = &s.Storefronts[i]
	}
	for i := range t.nodes {
		t.nodes[i] = emptyNode
	}
	for _, g := range s.Codes {
		if len(g.Entries) == 0 {
			continue
		}
		in.compact(g.Folded, g.Entries)
		sh := shardOf(g.Folded)
		nd := t.nodes[sh/nodeLeaves]
		if nd == emptyNode {
			nd = &node{}
			t.nodes[sh/nodeLeaves] = nd
		}
		nd[sh%nodeLeaves] = append(nd[sh%nodeLeaves], slot{g.Folded, g.Entries})
	}
	for _, nd := range t.nodes {
		if nd == emptyNode {
			continue
		}
		for i, l := range nd {
			// Sorted, the last of a repeated code kept, exactly sized.
			slices.SortStableFunc(l, compareSlots)
			out := l[:0]
			for j := range l {
				if j+1 < len(l) && l[j+1].folded == l[j].folded {
					continue
				}
				out = append(out, l[j])
			}
			nd[i] = slices.Clone(out)
			t.codes += len(out)
		}
	}
	return t
}

// Apply returns a new table with d applied; t is unchanged.
func (t *Table) Apply(d Delta) *Table {
	n := &Table{version: d.Version, offers: t.offers, storefronts: t.storefronts, nodes: t.nodes, codes: t.codes}
	if len(d.Offers) > 0 || len(d.DeletedOffers) > 0 {
		n.offers = maps.Clone(t.offers)
		for _, ref := range d.DeletedOffers {
			delete(n.offers, ref)
		}
		for i := range d.Offers {
			o := d.Offers[i]
			n.offers[o.Ref] = &o
		}
	}
	if len(d.Storefronts) > 0 || len(d.DeletedStorefronts) > 0 {
		n.storefronts = maps.Clone(t.storefronts)
		if n.storefronts == nil {
			n.storefronts = map[string]*Storefront{}
		}
		for _, ref := range d.DeletedStorefronts {
			delete(n.storefronts, ref)
		}
		for i := range d.Storefronts {
			sf := d.Storefronts[i]
			n.storefronts[sf.Ref] = &sf
		}
	}
	if len(d.Codes) == 0 {
		return n
	}
	// Entries share the table's offer refs and one copy of each route ref.
	in := interner{}
	in.offers = n.offers
	// The delta's groups by leaf, then code; of a code repeated, the last.
	type change struct {
		shard int
		g     *CodeGroup
	}
	cs := make([]change, len(d.Codes))
	for i := range d.Codes {
		cs[i] = change{shardOf(d.Codes[i].Folded), &d.Codes[i]}
	}
	slices.SortStableFunc(cs, func(a, b change) int {
		if a.shard != b.shard {
			return a.shard - b.shard
		}
		return compareStrings(a.g.Folded, b.g.Folded)
	})
	var nodeCloned [nodeCount]bool
	for i := 0; i < len(cs); {
		sh := cs[i].shard
		j := i
		for j < len(cs) && cs[j].shard == sh {
			j++
		}
		ni, li := sh/nodeLeaves, sh%nodeLeaves
		if !nodeCloned[ni] {
			c := *t.nodes[ni]
			n.nodes[ni], nodeCloned[ni] = &c, true
		}
		old := n.nodes[ni][li]
		merged := make(leaf, 0, len(old)+j-i)
		o := 0
		for k := i; k < j; k++ {
			g := cs[k].g
			if k+1 < j && cs[k+1].g.Folded == g.Folded {
				continue // a later group replaces this one
			}
			at, had := search(old[o:], g.Folded)
			merged = append(merged, old[o:o+at]...)
			o += at
			if had {
				o++
				n.codes--
			}
			if len(g.Entries) > 0 {
				in.compact(g.Folded, g.Entries)
				merged = append(merged, slot{g.Folded, g.Entries})
				n.codes++
			}
		}
		merged = append(merged, old[o:]...)
		if cap(merged) > len(merged) {
			merged = slices.Clone(merged)
		}
		n.nodes[ni][li] = merged
		i = j
	}
	return n
}

// Changes returns d without what would not change t: code groups equal to
// the table's, offers equal to the table's and deletions of offers it does not
// have. A status write, for one, marks a code without changing its group.
func (t *Table) Changes(d Delta) Delta {
	out := Delta{Version: d.Version}
	for _, o := range d.Offers {
		if cur := t.offers[o.Ref]; cur == nil || !reflect.DeepEqual(*cur, o) {
			out.Offers = append(out.Offers, o)
		}
	}
	for _, ref := range d.DeletedOffers {
		if t.offers[ref] != nil {
			out.DeletedOffers = append(out.DeletedOffers, ref)
		}
	}
	for _, g := range d.Codes {
		if !slices.EqualFunc(g.Entries, t.Group(g.Folded), Entry.Equal) {
			out.Codes = append(out.Codes, g)
		}
	}
	for _, sf := range d.Storefronts {
		if cur := t.storefronts[sf.Ref]; cur == nil || !cur.Equal(sf) {
			out.Storefronts = append(out.Storefronts, sf)
		}
	}
	for _, ref := range d.DeletedStorefronts {
		if t.storefronts[ref] != nil {
			out.DeletedStorefronts = append(out.DeletedStorefronts, ref)
		}
	}
	return out
}

// Objects counts the offers, code groups and storefronts d carries, deletions
// included; a delta of none changes nothing.
func (d *Delta) Objects() int {
	return len(d.Offers) + len(d.DeletedOffers) + len(d.Codes) + len(d.Storefronts) + len(d.DeletedStorefronts)
}

// Equal reports whether two entries route the same way.
func (e Entry) Equal(o Entry) bool {
	return e.Code == o.Code && e.Ref == o.Ref && e.OfferRef == o.OfferRef && e.AffiliateID == o.AffiliateID &&
		e.Start.Equal(o.Start) && e.End.Equal(o.End)
}

// Snapshot returns the table's contents, sorted for stable output.
func (t *Table) Snapshot() Snapshot {
	s := t.head()
	s.Codes = make([]CodeGroup, 0, t.codes)
	for _, nd := range t.nodes {
		for _, l := range nd {
			for _, sl := range l {
				s.Codes = append(s.Codes, CodeGroup{Folded: sl.folded, Entries: sl.entries})
			}
		}
	}
	slices.SortFunc(s.Codes, func(a, b CodeGroup) int { return compareStrings(a.Folded, b.Folded) })
	return s
}

// WriteSnapshot writes the table as a Snapshot's JSON, its codes unsorted,
// one group at a time: a tracker saving a table of a million codes holds
// neither a sorted copy of it nor its whole encoding (json.Marshal would,
// and keep the buffer in its pool).
func (t *Table) WriteSnapshot(w io.Writer) error {
	h := t.head()
	enc := json.NewEncoder(w)
	if _, err := io.WriteString(w, `{"version":`); err != nil {
		return err
	}
	if err := enc.Encode(h.Version); err != nil {
		return err
	}
	if _, err := io.WriteString(w, `,"offers":`); err != nil {
		return err
	}
	if err := enc.Encode(h.Offers); err != nil {
		return err
	}
	if _, err := io.WriteString(w, `,"storefronts":`); err != nil {
		return err
	}
	if err := enc.Encode(h.Storefronts); err != nil {
		return err
	}
	if _, err := io.WriteString(w, `,"codes":[`); err != nil {
		return err
	}
	sep := ""
	for _, nd := range t.nodes {
		for _, l := range nd {
			for _, sl := range l {
				if _, err := io.WriteString(w, sep); err != nil {
					return err
				}
				if err := enc.Encode(CodeGroup{Folded: sl.folded, Entries: sl.entries}); err != nil {
					return err
				}
				sep = ","
			}
		}
	}
	_, err := io.WriteString(w, "]}\n")
	return err
}

// head is Snapshot without the codes.
func (t *Table) head() Snapshot {
	s := Snapshot{Version: t.version, Offers: make([]Offer, 0, len(t.offers))}
	for _, o := range t.offers {
		s.Offers = append(s.Offers, *o)
	}
	slices.SortFunc(s.Offers, func(a, b Offer) int { return compareStrings(a.Ref, b.Ref) })
	for _, sf := range t.storefronts {
		s.Storefronts = append(s.Storefronts, *sf)
	}
	slices.SortFunc(s.Storefronts, func(a, b Storefront) int { return compareStrings(a.Ref, b.Ref) })
	return s
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Version is the version of the last snapshot or delta applied.
func (t *Table) Version() string { return t.version }

// Len returns the number of distinct (folded) codes.
func (t *Table) Len() int { return t.codes }

// Offers returns the number of offers.
func (t *Table) Offers() int { return len(t.offers) }

// Group returns the entries of a folded code.
func (t *Table) Group(folded string) []Entry {
	l := t.leaf(shardOf(folded))
	if i, ok := search(l, folded); ok {
		return l[i].entries
	}
	return nil
}

// Offer returns an offer by namespace/name.
func (t *Table) Offer(ref string) *Offer { return t.offers[ref] }

// Storefront returns a Ready storefront by namespace/name, or nil.
func (t *Table) Storefront(ref string) *Storefront { return t.storefronts[ref] }

// Storefronts returns the number of storefronts.
func (t *Table) Storefronts() int { return len(t.storefronts) }

// Outcome is the result of a lookup: OK or why not, mapped by the tracker to
// the reply of SPEC §3.
type Outcome uint8

const (
	OK Outcome = iota
	BadCode
	UnknownCode
	CodeNotOnOffer
	CodeNotActive
	UnknownGoal
)

var outcomeNames = [...]string{"ok", "bad_request", "unknown_code", "code_not_on_offer", "code_not_active", "unknown_goal"}

// String returns the reason string of SPEC §3.
func (o Outcome) String() string { return outcomeNames[o] }

// Query is an attribution request. OfferID, GoalID zero and GoalAlias empty
// mean "not given".
type Query struct {
	Code      string
	OfferID   int64
	GoalID    int64
	GoalAlias string
	At        time.Time
}

// Match is a successful attribution.
type Match struct {
	Entry *Entry
	Offer *Offer
	Goal  *Goal
}

// Lookup attributes q as SPEC §3 says. It does not allocate.
func (t *Table) Lookup(q *Query) (Match, Outcome) {
	var buf [MaxCodeLen]byte
	n, ok := foldInto(&buf, q.Code)
	if !ok {
		return Match{}, BadCode
	}
	entries := searchBytes(t.leaf(shardOfBytes(buf[:n])), buf[:n])
	if len(entries) == 0 {
		return Match{}, UnknownCode
	}
	var m Match
	out := CodeNotOnOffer
	if q.OfferID == 0 {
		out = CodeNotActive
	}
	for i := range entries {
		e := &entries[i]
		o := t.offers[e.OfferRef]
		if q.OfferID != 0 && (o == nil || o.ID != q.OfferID) {
			continue
		}
		if o == nil || !o.Enabled || !e.ActiveAt(q.At) {
			out = CodeNotActive
			if q.OfferID != 0 {
				break
			}
			continue
		}
		m.Entry, m.Offer, out = e, o, OK
		break
	}
	if out != OK {
		return Match{}, out
	}
	if m.Goal = m.Offer.goal(q.GoalID, q.GoalAlias); m.Goal == nil {
		return Match{}, UnknownGoal
	}
	return m, OK
}

func (o *Offer) goal(id int64, alias string) *Goal {
	if id == 0 && alias == "" {
		if o.DefaultGoal < 0 || o.DefaultGoal >= len(o.Goals) {
			return nil // a malformed table: no default goal
		}
		return &o.Goals[o.DefaultGoal]
	}
	for i := range o.Goals {
		g := &o.Goals[i]
		if (id == 0 || g.ID == id) && (alias == "" || g.Alias == alias) {
			return g
		}
	}
	return nil
}

// CompileOffers is the offer chain, the one place it exists: offer-id
// resolution, skipping duplicates and invalid specs, the token hash, then
// compilation. Pass every Offer sharing an id with the ones you care about.
// tokens maps an Offer with a token reference to the SHA-256 of its token;
// one missing from tokens has no readable secret. It returns the compiled
// Offers (owners of their id, sorted by ref) and every Offer's verdict.
func CompileOffers(offers []*OfferSpec, tokens map[Ref][]byte) ([]Offer, map[Ref]OfferVerdict) {
	rs := resolveOffers(offers)
	verdicts := make(map[Ref]OfferVerdict, len(rs))
	out := make([]Offer, 0, len(rs))
	for _, r := range rs {
		o := r.spec
		if r.goals == nil { // DuplicateOfferID or InvalidSpec: not in a table
			verdicts[o.Ref] = r.verdict
			continue
		}
		hash, found := tokens[o.Ref]
		if o.Token == nil {
			hash = nil
		}
		v := WithToken(r.verdict, o, found)
		verdicts[o.Ref] = v
		co := Offer{
			Ref: o.Ref.String(), ID: o.ID, Title: o.Title, Currency: o.Currency,
			Enabled:     v.Ready && o.PromoCodesEnabled,
			TokenSHA256: hash, Goals: r.goals,
		}
		if co.Currency == "" {
			co.Currency = "USD"
		}
		for i, g := range o.Goals {
			if g.Default {
				co.DefaultGoal = i
			}
		}
		out = append(out, co)
	}
	slices.SortFunc(out, func(a, b Offer) int { return compareStrings(a.Ref, b.Ref) })
	return out, verdicts
}

func compileGoals(o *OfferSpec) ([]Goal, error) {
	if len(o.Goals) == 0 {
		return nil, fmt.Errorf("offer has no goals")
	}
	goals := make([]Goal, 0, len(o.Goals))
	for _, g := range o.Goals {
		payout, err := compileAmount(g.Payout)
		if err != nil {
			return nil, fmt.Errorf("goal %d payout: %w", g.ID, err)
		}
		revenue, err := compileAmount(g.Revenue)
		if err != nil {
			return nil, fmt.Errorf("goal %d revenue: %w", g.ID, err)
		}
		status := g.Status
		if status == "" {
			status = GoalStatusApproved
		}
		goals = append(goals, Goal{ID: g.ID, Alias: g.Alias, Status: status, Payout: payout, Revenue: revenue})
	}
	return goals, nil
}

// GoalStatusApproved is the status of a goal that declares none.
const GoalStatusApproved = "approved"

func compileAmount(m Money) (Amount, error) {
	switch {
	case m.Fixed != nil && m.Percent == nil:
		d, err := decimal.NewFromString(*m.Fixed)
		return Amount{Value: d}, err
	case m.Percent != nil && m.Fixed == nil:
		d, err := decimal.NewFromString(*m.Percent)
		return Amount{Percent: true, Value: d}, err
	}
	return Amount{}, fmt.Errorf("set exactly one of fixed or percent")
}

// CompileGroup compiles claims sharing one folded code (pass all of them)
// into their table group: the accepted ones, oldest first.
func CompileGroup(folded string, claims []*Claim) CodeGroup {
	verdicts := ResolveGroup(claims)
	accepted := make([]*Claim, 0, len(claims))
	for i, c := range claims {
		if verdicts[i].Accepted {
			accepted = append(accepted, c)
		}
	}
	SortClaims(accepted)
	g := CodeGroup{Folded: folded}
	for _, c := range accepted {
		g.Entries = append(g.Entries, Entry{
			Code: c.Code, Ref: c.RouteRef(), OfferRef: c.OfferRef.String(),
			AffiliateID: c.AffiliateID, Start: c.Start.UTC(), End: c.End.UTC(),
		})
	}
	return g
}

// Compile builds a whole table from every Offer and claim. tokens is as for
// CompileOffers.
func Compile(version string, offers []*OfferSpec, claims []*Claim, tokens map[Ref][]byte) Snapshot {
	s := Snapshot{Version: version}
	s.Offers, _ = CompileOffers(offers, tokens)
	groups := map[string][]*Claim{}
	for _, c := range claims {
		groups[c.Folded] = append(groups[c.Folded], c)
	}
	for f, g := range groups {
		if cg := CompileGroup(f, g); len(cg.Entries) > 0 {
			s.Codes = append(s.Codes, cg)
		}
	}
	slices.SortFunc(s.Codes, func(a, b CodeGroup) int { return compareStrings(a.Folded, b.Folded) })
	return s
}

// Message is the route stream's wire type: one snapshot or one delta per
// line, shared by the route server and the trackers' sync client.
type Message struct {
	Type     string    `json:"type"` // MessageSnapshot, MessageDelta or MessageHeartbeat
	Version  string    `json:"version,omitempty"`
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	Delta    *Delta    `json:"delta,omitempty"`
}

// Message types.
const (
	MessageSnapshot  = "snapshot"
	MessageDelta     = "delta"
	MessageHeartbeat = "heartbeat"
)
