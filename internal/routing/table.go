package routing

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"hash/maphash"
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

const shardCount = 256

var shardSeed = maphash.MakeSeed()

// Table is an immutable routing table. Apply returns a new table sharing
// untouched shards, so a delta costs the size of what it touches.
type Table struct {
	version     string
	offers      map[string]*Offer      // by ref
	storefronts map[string]*Storefront // by ref
	shards      [shardCount]map[string][]Entry
	codes       int
}

func shardOf(folded string) int { return int(maphash.String(shardSeed, folded) % shardCount) }

// shardOfBytes equals shardOf(string(b)) without converting.
func shardOfBytes(b []byte) int { return int(maphash.Bytes(shardSeed, b) % shardCount) }

// NewTable builds a table from a snapshot.
func NewTable(s Snapshot) *Table {
	t := &Table{version: s.Version, offers: make(map[string]*Offer, len(s.Offers)),
		storefronts: make(map[string]*Storefront, len(s.Storefronts))}
	for i := range s.Offers {
		t.offers[s.Offers[i].Ref] = &s.Offers[i]
	}
	for i := range s.Storefronts {
		t.storefronts[s.Storefronts[i].Ref] = &s.Storefronts[i]
	}
	for i := range t.shards {
		t.shards[i] = make(map[string][]Entry, len(s.Codes)/shardCount+1)
	}
	// A decoded snapshot holds a copy of a ref per entry; the 5,000 entries
	// of a set, and the codes of an offer, share one string instead
	// (BenchmarkTableMemory/sets: 297 -> 229 B per code at 1M).
	refs := make(map[string]string, len(s.Offers)+64)
	intern := func(r string) string {
		if v, ok := refs[r]; ok {
			return v
		}
		refs[r] = r
		return r
	}
	for _, g := range s.Codes {
		if len(g.Entries) > 0 {
			for i := range g.Entries {
				e := &g.Entries[i]
				e.Ref, e.OfferRef = intern(e.Ref), intern(e.OfferRef)
			}
			t.shards[shardOf(g.Folded)][g.Folded] = g.Entries
			t.codes++
		}
	}
	return t
}

// Apply returns a new table with d applied; t is unchanged.
func (t *Table) Apply(d Delta) *Table {
	n := &Table{version: d.Version, offers: t.offers, storefronts: t.storefronts, shards: t.shards, codes: t.codes}
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
	var cloned [shardCount]bool
	for _, g := range d.Codes {
		s := shardOf(g.Folded)
		if !cloned[s] {
			n.shards[s], cloned[s] = maps.Clone(t.shards[s]), true
		}
		_, had := n.shards[s][g.Folded]
		switch {
		case len(g.Entries) == 0 && had:
			delete(n.shards[s], g.Folded)
			n.codes--
		case len(g.Entries) > 0:
			n.shards[s][g.Folded] = g.Entries
			if !had {
				n.codes++
			}
		}
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
	s := Snapshot{Version: t.version, Offers: make([]Offer, 0, len(t.offers)), Codes: make([]CodeGroup, 0, t.codes)}
	for _, o := range t.offers {
		s.Offers = append(s.Offers, *o)
	}
	slices.SortFunc(s.Offers, func(a, b Offer) int { return compareStrings(a.Ref, b.Ref) })
	for _, sf := range t.storefronts {
		s.Storefronts = append(s.Storefronts, *sf)
	}
	slices.SortFunc(s.Storefronts, func(a, b Storefront) int { return compareStrings(a.Ref, b.Ref) })
	for i := range t.shards {
		for f, es := range t.shards[i] {
			s.Codes = append(s.Codes, CodeGroup{Folded: f, Entries: es})
		}
	}
	slices.SortFunc(s.Codes, func(a, b CodeGroup) int { return compareStrings(a.Folded, b.Folded) })
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
func (t *Table) Group(folded string) []Entry { return t.shards[shardOf(folded)][folded] }

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
	entries := t.shards[shardOfBytes(buf[:n])][string(buf[:n])]
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
