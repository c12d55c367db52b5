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
	Ref         string `json:"ref"`
	OfferRef    string `json:"offerRef"`
	AffiliateID int64  `json:"affiliateID"`
	Start       Date   `json:"start,omitzero"` // inclusive; zero: unbounded
	End         Date   `json:"end,omitzero"`   // exclusive; zero: unbounded
}

// ActiveAt reports whether the entry's dates include t.
func (e *Entry) ActiveAt(t time.Time) bool { return activeAt(e.Start, e.End, t) }

func activeAt(start, end Date, t time.Time) bool {
	s := secondOf(t)
	return (start.IsZero() || s >= start.sec) && (end.IsZero() || s < end.sec)
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

// The codes live in shardCount leaves under 256 nodes of 256 leaves. A leaf
// holds its codes' entries in one array sorted by folded code, a group's
// entries next to each other, oldest first, and beside it the folded codes
// end to end in one string. An entry there is a slot of 16 bytes: its
// affiliate and a pointer to the source it shares with the other entries
// of its set (ref, offer and dates); its code is its folded key unless the
// leaf says otherwise. A code of 8 characters and one entry takes 28 bytes
// (the slot, the key's 8 bytes and its 4-byte offset), 34 with the
// allocator's rounding and the leaves' headers (BenchmarkTableMemory/sets
// at 1M), where the 72-byte Entry in the leaves, beside a string per key,
// took 113 and a slice of (folded code, entries) 172. A delta copies only
// the nodes and leaves it touches: a set of 5,000 codes touches ~4,900 of
// 65,536 leaves (~8 % of the table) where 256 flat shards were all
// touched, each delta copying the whole table.
const (
	nodeCount  = 256
	nodeLeaves = 256
	shardCount = nodeCount * nodeLeaves
)

// source is what an entry holds beyond its code and affiliate. The 5,000
// entries of a set share one, so it is held once per NewTable or Apply
// that brought them (interner.source): equal sources from different calls
// stay apart, which keeps a table free of any registry spanning its
// versions.
type source struct {
	ref, offerRef string
	start, end    Date
}

// slot is an entry in a leaf.
type slot struct {
	src       *source
	affiliate int64
}

// leaf is the codes of one shard: the folded code of slots[i] is key(i),
// keys[off[i]:off[i+1]], all of them end to end in one string, which spares
// each code a string header and an allocation of its own. When an entry's
// code is written other than its folded form (promo22 for PROMO22), keys
// holds after the n = len(slots) folded codes the n codes as written, and
// off 2n+1 offsets instead of n+1; most leaves have no such entry, so the
// codes cost nothing where they equal the keys.
type leaf struct {
	keys  string
	off   []uint32
	slots []slot
}

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

func (t *Table) leaf(shard int) *leaf { return &t.nodes[shard/nodeLeaves][shard%nodeLeaves] }

// key returns the folded code of slots[i].
func (l *leaf) key(i int) string { return l.keys[l.off[i]:l.off[i+1]] }

// code returns the code of slots[i] as written.
func (l *leaf) code(i int) string {
	if len(l.off) > len(l.slots)+1 {
		i += len(l.slots)
	}
	return l.key(i)
}

// entry returns slots[i] as the Entry it stands for.
func (l *leaf) entry(i int) Entry {
	src := l.slots[i].src
	return Entry{Code: l.code(i), Ref: src.ref, OfferRef: src.offerRef, AffiliateID: l.slots[i].affiliate,
		Start: src.start, End: src.end}
}

// appendEntries appends the entries of slots[lo:hi] to dst.
func (l *leaf) appendEntries(dst []Entry, lo, hi int) []Entry {
	for i := lo; i < hi; i++ {
		dst = append(dst, l.entry(i))
	}
	return dst
}

// search returns where folded's entries start, or would, in l.
func (l *leaf) search(folded string) int {
	lo, hi := 0, len(l.slots)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l.key(m) < folded {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// searchBytes is search for string(b), without converting.
func (l *leaf) searchBytes(b []byte) int {
	lo, hi := 0, len(l.slots)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l.key(m) < string(b) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// find returns where folded's entries are, or would be, in l: l.slots[lo:hi].
func (l *leaf) find(folded string) (lo, hi int) {
	lo = l.search(folded)
	for hi = lo; hi < len(l.slots) && l.key(hi) == folded; hi++ {
	}
	return lo, hi
}

// groups yields where each code of l has its entries, in order: l.slots[lo:hi].
func (l *leaf) groups(yield func(lo, hi int) bool) {
	for lo := 0; lo < len(l.slots); {
		hi := lo + 1
		for hi < len(l.slots) && l.key(hi) == l.key(lo) {
			hi++
		}
		if !yield(lo, hi) {
			return
		}
		lo = hi
	}
}

// pending is a code group on its way into leaves: its entries as slots and,
// only when one of them is written other than folded, every entry's code.
type pending struct {
	folded string
	slots  []slot
	codes  []string // nil: each code is folded
}

// builder is where merge makes a leaf, reused from leaf to leaf: the leaf
// is then copied out of it exactly sized.
type builder struct {
	keys  []byte
	off   []uint32
	slots []slot
	// Once a code differs from its key (written), every code, in codes,
	// ending at ends.
	codes   []byte
	ends    []uint32
	written bool
}

func (b *builder) add(key, code string, s slot) {
	b.keys = append(b.keys, key...)
	b.off = append(b.off, uint32(len(b.keys)))
	b.slots = append(b.slots, s)
	if !b.written && code != key { // the codes so far are their keys
		b.written = true
		b.codes = append(b.codes[:0], b.keys[:len(b.keys)-len(key)]...)
		b.ends = append(b.ends[:0], b.off[1:len(b.off)-1]...)
	}
	if b.written {
		b.codes = append(b.codes, code...)
		b.ends = append(b.ends, uint32(len(b.codes)))
	}
}

// merge returns l with ps applied: ps is sorted by folded code, each group
// replaces the code's entries, a group without entries deletes the code, and
// of a code repeated the last counts. It returns the change in the number
// of codes. l is unchanged; the new leaf holds copies of the groups' slots
// and of their keys and codes, made in b.
func (l leaf) merge(ps []*pending, b *builder) (leaf, int) {
	n, size := len(l.slots), len(l.keys) // at most, once each
	for _, p := range ps {
		n += len(p.slots)
		size += len(p.folded) * len(p.slots)
	}
	*b = builder{keys: slices.Grow(b.keys[:0], size), off: append(slices.Grow(b.off[:0], n+1), 0),
		slots: slices.Grow(b.slots[:0], n), codes: b.codes, ends: b.ends}
	delta, o := 0, 0 // o: l is copied up to o
	for k, p := range ps {
		if k+1 < len(ps) && ps[k+1].folded == p.folded {
			continue // a later group replaces this one
		}
		lo, hi := l.find(p.folded) // lo >= o: ps and l are sorted alike
		for i := o; i < lo; i++ {
			b.add(l.key(i), l.code(i), l.slots[i])
		}
		if hi > lo {
			delta--
		}
		o = hi
		for i, s := range p.slots {
			code := p.folded
			if p.codes != nil {
				code = p.codes[i]
			}
			b.add(p.folded, code, s)
		}
		if len(p.slots) > 0 {
			delta++
		}
	}
	for i := o; i < len(l.slots); i++ {
		b.add(l.key(i), l.code(i), l.slots[i])
	}
	if len(b.slots) == 0 {
		return leaf{}, delta
	}
	if b.written { // the codes follow the keys
		n := uint32(len(b.keys))
		b.keys = append(b.keys, b.codes...)
		for _, e := range b.ends {
			b.off = append(b.off, n+e)
		}
	}
	return leaf{keys: string(b.keys), off: slices.Clone(b.off), slots: slices.Clone(b.slots)}, delta
}

func comparePending(a, b *pending) int { return compareStrings(a.folded, b.folded) }

// interner makes equal strings and sources share one copy: a decoded
// snapshot or delta holds a copy of a ref per entry, where the 5,000 entries
// of a set, and the codes of an offer, can share one string, and the
// entries of a set one source.
type interner struct {
	offers map[string]*Offer // refs of these are used as they are
	refs   map[string]string
	// byRef is the first source of each route ref, sources every other
	// source: a ref is a PromoCode, one source, or a set, most often one
	// too, so the map of every source, hashing four fields, holds only the
	// few of sets whose entries differ in dates.
	byRef   map[string]*source
	sources map[source]*source
	last    *source // the source of the previous entry, most often the next one's
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

// source returns the source of e, the one of an earlier entry when equal.
func (in *interner) source(e *Entry) *source {
	k := source{e.Ref, e.OfferRef, e.Start, e.End}
	if in.last != nil && *in.last == k {
		return in.last
	}
	s := in.byRef[e.Ref]
	switch {
	case s == nil:
		s = &source{e.Ref, in.intern(e.OfferRef), e.Start, e.End}
		if in.byRef == nil {
			in.byRef = map[string]*source{}
		}
		in.byRef[s.ref] = s
	case *s != k:
		if o := in.sources[k]; o != nil {
			s = o
			break
		}
		s = &source{s.ref, in.intern(e.OfferRef), e.Start, e.End}
		if in.sources == nil {
			in.sources = map[source]*source{}
		}
		in.sources[*s] = s
	}
	in.last = s
	return s
}

// pending returns g on its way into leaves, its slots in slots[:len(g.Entries)].
// NewTable and Apply run it over the groups in the order they were decoded,
// the order of their memory: reading the entries in leaf order cost a cache
// miss an entry (NewTable at 1M codes: ~0.3 s more). A code equal to its
// folded form, as most are, is not kept: the leaf's key stands for it.
func (in *interner) pending(g *CodeGroup, slots []slot) pending {
	p := pending{folded: g.Folded, slots: slots[:len(g.Entries):len(g.Entries)]}
	for i := range g.Entries {
		e := &g.Entries[i]
		p.slots[i] = slot{in.source(e), e.AffiliateID}
		if e.Code != g.Folded && p.codes == nil {
			p.codes = make([]string, len(g.Entries))
			for j := range i {
				p.codes[j] = g.Folded
			}
		}
		if p.codes != nil {
			p.codes[i] = e.Code
			if e.Code == g.Folded {
				p.codes[i] = g.Folded
			}
		}
	}
	return p
}

// pendings returns gs on their way into leaves, in their order, their slots
// in one array (until merged into leaves).
func (in *interner) pendings(gs []CodeGroup) []pending {
	entries := 0
	for i := range gs {
		entries += len(gs[i].Entries)
	}
	slots := make([]slot, entries)
	ps := make([]pending, len(gs))
	for i := range gs {
		ps[i] = in.pending(&gs[i], slots)
		slots = slots[len(gs[i].Entries):]
	}
	return ps
}

// NewTable builds a table from a snapshot. Of a code repeated, the last
// group with entries counts. The table holds none of s's entries, only some
// of their strings: one copy of each ref, and the codes written other than
// their folded form.
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
	ps := in.pendings(s.Codes)
	byShard := make([][]*pending, shardCount)
	for i := range s.Codes {
		if g := &s.Codes[i]; len(g.Entries) > 0 {
			sh := shardOf(g.Folded)
			byShard[sh] = append(byShard[sh], &ps[i])
		}
	}
	var b builder
	for sh, gs := range byShard {
		if len(gs) == 0 {
			continue
		}
		slices.SortStableFunc(gs, comparePending)
		nd := t.nodes[sh/nodeLeaves]
		if nd == emptyNode {
			nd = &node{}
			t.nodes[sh/nodeLeaves] = nd
		}
		var codes int
		nd[sh%nodeLeaves], codes = leaf{}.merge(gs, &b)
		t.codes += codes
	}
	return t
}

// Apply returns a new table with d applied; t is unchanged. As NewTable, it
// holds none of d's entries, only some of their strings.
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
		p     *pending
	}
	ps := in.pendings(d.Codes)
	cs := make([]change, len(d.Codes))
	for i := range d.Codes {
		cs[i] = change{shardOf(d.Codes[i].Folded), &ps[i]}
	}
	slices.SortStableFunc(cs, func(a, b change) int {
		if a.shard != b.shard {
			return a.shard - b.shard
		}
		return comparePending(a.p, b.p)
	})
	var nodeCloned [nodeCount]bool
	var gs []*pending
	var b builder
	for i := 0; i < len(cs); {
		sh := cs[i].shard
		gs = gs[:0]
		for ; i < len(cs) && cs[i].shard == sh; i++ {
			gs = append(gs, cs[i].p)
		}
		ni, li := sh/nodeLeaves, sh%nodeLeaves
		if !nodeCloned[ni] {
			c := *t.nodes[ni]
			n.nodes[ni], nodeCloned[ni] = &c, true
		}
		var codes int
		n.nodes[ni][li], codes = n.nodes[ni][li].merge(gs, &b)
		n.codes += codes
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
		if !t.holds(g.Folded, g.Entries) {
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

// holds reports whether folded's entries in t are es (none when es is empty).
func (t *Table) holds(folded string, es []Entry) bool {
	l := t.leaf(shardOf(folded))
	lo, hi := l.find(folded)
	if hi-lo != len(es) {
		return false
	}
	for i := range es {
		if l.entry(lo+i) != es[i] {
			return false
		}
	}
	return true
}

// Snapshot returns the table's contents, sorted for stable output. Its
// entries are made from the leaves' slots, all in one array.
func (t *Table) Snapshot() Snapshot {
	s := t.head()
	s.Codes = make([]CodeGroup, 0, t.codes)
	entries := 0
	for _, nd := range t.nodes {
		for _, l := range nd {
			entries += len(l.slots)
		}
	}
	es := make([]Entry, 0, entries)
	for _, nd := range t.nodes {
		for _, l := range nd {
			for lo, hi := range l.groups {
				from := len(es)
				es = l.appendEntries(es, lo, hi)
				s.Codes = append(s.Codes, CodeGroup{Folded: l.key(lo), Entries: es[from:len(es):len(es)]})
			}
		}
	}
	slices.SortFunc(s.Codes, func(a, b CodeGroup) int { return compareStrings(a.Folded, b.Folded) })
	return s
}

// WriteSnapshot writes the table as a Snapshot's JSON, its codes unsorted,
// one group at a time, its entries made in one reused buffer: a tracker
// saving a table of a million codes holds neither a sorted copy of it nor
// its whole encoding (json.Marshal would, and keep the buffer in its pool).
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
	var es []Entry
	for _, nd := range t.nodes {
		for _, l := range nd {
			for lo, hi := range l.groups {
				if _, err := io.WriteString(w, sep); err != nil {
					return err
				}
				es = l.appendEntries(es[:0], lo, hi)
				if err := enc.Encode(CodeGroup{Folded: l.key(lo), Entries: es}); err != nil {
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

// Group returns the entries of a folded code, made for the caller (a leaf
// holds slots, not entries), or nil.
func (t *Table) Group(folded string) []Entry {
	l := t.leaf(shardOf(folded))
	if lo, hi := l.find(folded); lo < hi {
		return l.appendEntries(make([]Entry, 0, hi-lo), lo, hi)
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

// Match is a successful attribution. Entry is a copy, made from the
// table's slot when matched: a leaf holds no Entry to point at.
type Match struct {
	Entry Entry
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
	key := buf[:n]
	l := t.leaf(shardOfBytes(key))
	i := l.searchBytes(key)
	if i == len(l.slots) || l.key(i) != string(key) {
		return Match{}, UnknownCode
	}
	var o *Offer
	out := CodeNotOnOffer
	if q.OfferID == 0 {
		out = CodeNotActive
	}
	// The code's entries, up to the first that matches: the key after them
	// is read only when none before it did.
	for ; i < len(l.slots) && l.key(i) == string(key); i++ {
		src := l.slots[i].src
		o = t.offers[src.offerRef]
		if q.OfferID != 0 && (o == nil || o.ID != q.OfferID) {
			continue
		}
		if o == nil || !o.Enabled || !activeAt(src.start, src.end, q.At) {
			out = CodeNotActive
			if q.OfferID != 0 {
				break
			}
			continue
		}
		out = OK
		break
	}
	if out != OK {
		return Match{}, out
	}
	g := o.goal(q.GoalID, q.GoalAlias)
	if g == nil {
		return Match{}, UnknownGoal
	}
	return Match{Entry: l.entry(i), Offer: o, Goal: g}, OK
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
			AffiliateID: c.AffiliateID, Start: DateOf(c.Start), End: DateOf(c.End),
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
