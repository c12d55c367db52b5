package routing

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// world is a small platform: PROMO22 of affiliate 42 on summer (first) and
// winter, a scheduled code, a code on a disabled offer, a rejected code, a
// token-protected offer and an Offer that lost its id.
func world() *Table {
	vip := offer("shop", "vip", 9, true, 0)
	vip.Token = &TokenRef{Name: "vip-token", Key: "token"}
	hash := sha256.Sum256([]byte("s3cret"))
	offers := []*OfferSpec{
		offer("shop", "summer", 7, true, 0),
		offer("shop", "winter", 8, true, time.Second),
		offer("shop", "off", 10, false, 0),
		offer("other", "copycat", 7, true, time.Hour),
		vip,
	}
	codes := []*Claim{
		code("shop", "promo22-summer", "PROMO22", "summer", 42, 0),
		code("shop", "promo22-winter", "promo22", "winter", 42, time.Minute),
		code("other", "stolen", "PROMO22", "copycat", 5, 2*time.Minute),
		dated(code("shop", "ny", "NEWYEAR27", "summer", 42, 0), t0.Add(24*time.Hour), t0.Add(48*time.Hour)),
		code("shop", "offcode", "OFF1", "off", 42, 0),
		code("other", "copy1", "COPY1", "copycat", 5, 0),
		code("shop", "vip10", "VIP10", "vip", 7, 0),
		code("shop", "ghost", "GHOST", "deleted-offer", 3, 0),
	}
	return NewTable(Compile("v1", offers, codes, map[Ref][]byte{{Namespace: "shop", Name: "vip"}: hash[:]}))
}

func TestLookup(t *testing.T) {
	tbl := world()
	now := t0.Add(time.Hour)
	for _, tc := range []struct {
		name    string
		q       Query
		out     Outcome
		ref     string
		goal    int64
		offerID int64
	}{
		{"created first wins without offer_id", Query{Code: "promo22"}, OK, "shop/promo22-summer", 1, 7},
		{"offer_id picks the reuse", Query{Code: "PROMO22", OfferID: 8}, OK, "shop/promo22-winter", 1, 8},
		{"code on another offer", Query{Code: "PROMO22", OfferID: 99}, CodeNotOnOffer, "", 0, 0},
		{"rejected code is not routed", Query{Code: "PROMO22", OfferID: 7}, OK, "shop/promo22-summer", 1, 7},
		{"unknown code", Query{Code: "NOPE"}, UnknownCode, "", 0, 0},
		{"malformed code", Query{Code: "PROMO-22"}, BadCode, "", 0, 0},
		{"empty code", Query{Code: ""}, BadCode, "", 0, 0},
		{"scheduled code is not active", Query{Code: "newyear27"}, CodeNotActive, "", 0, 0},
		{"scheduled code active inside its dates", Query{Code: "newyear27", At: t0.Add(25 * time.Hour)}, OK, "shop/ny", 1, 7},
		{"expired at end", Query{Code: "newyear27", At: t0.Add(48 * time.Hour)}, CodeNotActive, "", 0, 0},
		{"scheduled with offer_id", Query{Code: "newyear27", OfferID: 7}, CodeNotActive, "", 0, 0},
		{"disabled offer", Query{Code: "OFF1"}, CodeNotActive, "", 0, 0},
		{"offer lost its id", Query{Code: "COPY1"}, CodeNotActive, "", 0, 0},
		{"offer does not exist", Query{Code: "GHOST"}, CodeNotActive, "", 0, 0},
		{"goal by id", Query{Code: "PROMO22", GoalID: 2}, OK, "shop/promo22-summer", 2, 7},
		{"goal by alias", Query{Code: "PROMO22", GoalAlias: "lead"}, OK, "shop/promo22-summer", 2, 7},
		{"goal id and alias agree", Query{Code: "PROMO22", GoalID: 2, GoalAlias: "lead"}, OK, "shop/promo22-summer", 2, 7},
		{"goal id and alias disagree", Query{Code: "PROMO22", GoalID: 1, GoalAlias: "lead"}, UnknownGoal, "", 0, 0},
		{"unknown goal id", Query{Code: "PROMO22", GoalID: 3}, UnknownGoal, "", 0, 0},
		{"unknown goal alias", Query{Code: "PROMO22", GoalAlias: "install"}, UnknownGoal, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.q.At.IsZero() {
				tc.q.At = now
			}
			m, out := tbl.Lookup(&tc.q)
			if out != tc.out {
				t.Fatalf("outcome %s, want %s", out, tc.out)
			}
			if out != OK {
				if m != (Match{}) {
					t.Fatal("a failed lookup returned a match")
				}
				return
			}
			if m.Entry.Ref != tc.ref || m.Goal.ID != tc.goal || m.Offer.ID != tc.offerID {
				t.Fatalf("matched %s goal %d offer %d, want %s %d %d", m.Entry.Ref, m.Goal.ID, m.Offer.ID, tc.ref, tc.goal, tc.offerID)
			}
		})
	}
}

func TestLookupStateAfterCompile(t *testing.T) {
	tbl := world()
	if m, out := tbl.Lookup(&Query{Code: "promo22", At: t0}); out != OK || m.Entry.Code != "PROMO22" || m.Entry.AffiliateID != 42 {
		t.Fatalf("entry keeps the code as written and the affiliate: %+v %s", m.Entry, out)
	}
	if tbl.Len() != 6 || tbl.Offers() != 4 {
		t.Fatalf("Len %d Offers %d: want 6 codes (rejected one left out) and 4 offers (duplicate id left out)", tbl.Len(), tbl.Offers())
	}
}

func TestOutcomeNames(t *testing.T) {
	want := map[Outcome]string{OK: "ok", BadCode: "bad_request", UnknownCode: "unknown_code",
		CodeNotOnOffer: "code_not_on_offer", CodeNotActive: "code_not_active", UnknownGoal: "unknown_goal"}
	for o, s := range want {
		if o.String() != s {
			t.Errorf("%d: %s, want %s", o, o, s)
		}
	}
}

func TestToken(t *testing.T) {
	tbl := world()
	m, out := tbl.Lookup(&Query{Code: "VIP10", At: t0})
	if out != OK || !m.Offer.RequiresToken() {
		t.Fatalf("vip offer must require a token: %s", out)
	}
	if !m.Offer.CheckToken("s3cret") || m.Offer.CheckToken("s3cre") || m.Offer.CheckToken("") {
		t.Fatal("token comparison")
	}
	m, _ = tbl.Lookup(&Query{Code: "PROMO22", At: t0})
	if m.Offer.RequiresToken() || !m.Offer.CheckToken("anything") {
		t.Fatal("an offer without token accepts any")
	}
}

func TestTokenSecretMissingDisablesOffer(t *testing.T) {
	vip := offer("shop", "vip", 9, true, 0)
	vip.Token = &TokenRef{Name: "vip-token", Key: "token"}
	tbl := NewTable(Compile("v1", []*OfferSpec{vip}, []*Claim{code("shop", "v", "VIP10", "vip", 7, 0)}, nil))
	if _, out := tbl.Lookup(&Query{Code: "VIP10", At: t0}); out != CodeNotActive {
		t.Fatalf("an offer whose token secret is missing routes nothing: %s", out)
	}
}

func TestPayout(t *testing.T) {
	m, _ := world().Lookup(&Query{Code: "PROMO22", At: t0})
	amount := decimal.RequireFromString("19.99")
	if got := m.Goal.Payout.For(amount); got.String() != "1.999" {
		t.Errorf("10%% of 19.99 = %s, want exact 1.999", got)
	}
	if got := m.Goal.Revenue.For(amount); got.String() != "8" {
		t.Errorf("fixed revenue %s", got)
	}
	if got := m.Goal.Payout.For(decimal.Zero); !got.IsZero() {
		t.Errorf("percent of no amount %s", got)
	}
	lead, _ := world().Lookup(&Query{Code: "PROMO22", GoalAlias: "lead", At: t0})
	if got := lead.Goal.Payout.For(amount); got.String() != "1.5" || lead.Goal.Status != "pending" {
		t.Errorf("fixed payout %s status %s", got, lead.Goal.Status)
	}
	third := Amount{Percent: true, Value: decimal.RequireFromString("33.333333")}
	if got := third.For(decimal.RequireFromString("0.01")); got.String() != "0.0033333333" {
		t.Errorf("exact percent %s", got)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tbl := world()
	for _, q := range []Query{
		{Code: "promo22", At: t0},
		{Code: "PROMO22", OfferID: 8, GoalAlias: "lead", At: t0},
		{Code: "nope", At: t0},
		{Code: "bad-code", At: t0},
	} {
		if n := testing.AllocsPerRun(100, func() { tbl.Lookup(&q) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times", q.Code, n)
		}
	}
}

func TestApplyDelta(t *testing.T) {
	before := world()
	winter := offer("shop", "winter", 8, false, time.Second) // promo codes turned off
	compiled, _ := CompileOffers([]*OfferSpec{winter}, nil)
	if len(compiled) != 1 {
		t.Fatalf("compiled %d offers", len(compiled))
	}
	wo := compiled[0]
	after := before.Apply(Delta{
		Version:       "v2",
		Offers:        []Offer{wo},
		DeletedOffers: []string{"shop/off"},
		Codes: []CodeGroup{
			{Folded: "NEWCODE", Entries: []Entry{{Code: "NewCode", Ref: "shop/new", OfferRef: "shop/summer", AffiliateID: 1}}},
			{Folded: "COPY1"}, // deleted
		},
	})
	if after.Version() != "v2" || before.Version() != "v1" {
		t.Fatal("versions")
	}
	if _, out := after.Lookup(&Query{Code: "newcode", At: t0}); out != OK {
		t.Errorf("added code: %s", out)
	}
	if _, out := after.Lookup(&Query{Code: "COPY1", At: t0}); out != UnknownCode {
		t.Errorf("deleted code: %s", out)
	}
	if _, out := after.Lookup(&Query{Code: "PROMO22", OfferID: 8, At: t0}); out != CodeNotActive {
		t.Errorf("disabled offer: %s", out)
	}
	if after.Offer("shop/off") != nil || after.Len() != before.Len() {
		t.Errorf("offer delete / code count: %d vs %d", after.Len(), before.Len())
	}
	// The old table is untouched: readers holding it see a consistent view.
	if _, out := before.Lookup(&Query{Code: "COPY1", At: t0}); out != CodeNotActive {
		t.Errorf("old table changed: %s", out)
	}
	if _, out := before.Lookup(&Query{Code: "newcode", At: t0}); out != UnknownCode {
		t.Errorf("old table changed: %s", out)
	}
	if _, out := before.Lookup(&Query{Code: "PROMO22", OfferID: 8, At: t0}); out != OK {
		t.Errorf("old table changed: %s", out)
	}
}

func TestChangesDropsWhatChangesNothing(t *testing.T) {
	tbl := world()
	same := slices.Clone(tbl.Group("PROMO22"))
	for i := range same { // the same instants in another zone are the same entry
		same[i].Start = DateOf(same[i].Start.Time().In(time.FixedZone("x", 3600)))
	}
	moved := slices.Clone(tbl.Group("COPY1"))
	moved[0].AffiliateID++
	summer := *tbl.Offer("shop/summer")
	winter := *tbl.Offer("shop/winter")
	winter.Enabled = !winter.Enabled
	d := tbl.Changes(Delta{
		Version:       "v2",
		Offers:        []Offer{summer, winter},
		DeletedOffers: []string{"shop/off", "shop/never-existed"},
		Codes: []CodeGroup{
			{Folded: "PROMO22", Entries: same},
			{Folded: "COPY1", Entries: moved},
			{Folded: "NOSUCH"},                   // deleting an absent code
			{Folded: "NEWYEAR27"},                // deleting a present one
			{Folded: "NEW1", Entries: moved[:1]}, // adding one
		},
	})
	var folded []string
	for _, g := range d.Codes {
		folded = append(folded, g.Folded)
	}
	if !slices.Equal(folded, []string{"COPY1", "NEWYEAR27", "NEW1"}) {
		t.Errorf("codes kept: %v", folded)
	}
	if len(d.Offers) != 1 || d.Offers[0].Ref != "shop/winter" {
		t.Errorf("offers kept: %+v", d.Offers)
	}
	if !slices.Equal(d.DeletedOffers, []string{"shop/off"}) || d.Version != "v2" {
		t.Errorf("deletions kept: %v, version %q", d.DeletedOffers, d.Version)
	}
	if d.Objects() == 0 {
		t.Error("a delta with changes is not empty")
	}
	if e := tbl.Changes(Delta{Codes: []CodeGroup{{Folded: "PROMO22", Entries: same}}, Offers: []Offer{summer}}); e.Objects() != 0 {
		t.Errorf("a delta that changes nothing must come back empty: %+v", e)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	tbl := world()
	b, err := json.Marshal(tbl.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	again := NewTable(s)
	b2, _ := json.Marshal(again.Snapshot())
	if string(b) != string(b2) {
		t.Fatalf("round trip differs:\n%s\n%s", b, b2)
	}
	m, out := again.Lookup(&Query{Code: "newyear27", At: t0.Add(25 * time.Hour)})
	if out != OK || m.Goal.Payout.For(decimal.RequireFromString("100")).String() != "10" || m.Goal.Revenue.Text(decimal.Zero) != "8.00" {
		t.Fatalf("decoded table: %s", out)
	}
}

func bigTable(n int) (*Table, []string) {
	offers := make([]*OfferSpec, 0, 1000)
	for i := range 1000 {
		offers = append(offers, offer("shop", fmt.Sprintf("o%d", i), int64(i+1), true, 0))
	}
	codes := make([]*Claim, 0, n)
	names := make([]string, 0, n)
	for i := range n {
		c := fmt.Sprintf("CODE%d", i)
		codes = append(codes, code("shop", fmt.Sprintf("c%d", i), c, fmt.Sprintf("o%d", i%1000), int64(i%5000+1), 0))
		names = append(names, c)
	}
	return NewTable(Compile("bench", offers, codes, nil)), names
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("codes=%d", n), func(b *testing.B) {
			tbl, names := bigTable(n)
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				q := Query{Code: names[i%len(names)], At: t0}
				if _, out := tbl.Lookup(&q); out != OK {
					b.Fatal(out)
				}
				i++
			}
		})
	}
}

func BenchmarkApplyDelta(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("codes=%d", n), func(b *testing.B) {
			tbl, _ := bigTable(n)
			d := Delta{Version: "d", Codes: []CodeGroup{{Folded: "EXTRA", Entries: []Entry{{Code: "EXTRA", Ref: "shop/x", OfferRef: "shop/o1", AffiliateID: 1}}}}}
			b.ReportAllocs()
			for b.Loop() {
				tbl.Apply(d)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("codes=%d", n), func(b *testing.B) {
			for b.Loop() {
				bigTable(n)
			}
		})
	}
}

// BenchmarkTableMemory reports the heap a table holds per code, decoded from
// its JSON snapshot as a tracker does.
func BenchmarkTableMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("codes=%d", n), func(b *testing.B) { tableMemory(b, bigTable, n) })
		b.Run(fmt.Sprintf("sets/codes=%d", n), func(b *testing.B) { tableMemory(b, bigSetTable, n) })
	}
}

// bigSetTable is n codes in sets of 5,000 over 20 offers, as kubectl promo
// imports a catalogue: entries of one set share its route ref.
func bigSetTable(n int) (*Table, []string) {
	offers := make([]*OfferSpec, 0, 20)
	for i := range 20 {
		offers = append(offers, offer("catalogue", fmt.Sprintf("offer%d", i), int64(i+1), true, 0))
	}
	codes := make([]*Claim, 0, n)
	names := make([]string, 0, n)
	for i := range n {
		c := fmt.Sprintf("C%07d", i)
		cl := code("catalogue", fmt.Sprintf("offer%d-%04d", i/5000%20, i/5000), c, fmt.Sprintf("offer%d", i/5000%20), int64(i%50_000+1), 0)
		cl.Route = "catalogue/promocodeset/" + cl.Ref.Name
		cl.Rank.Position = i % 5000
		codes = append(codes, cl)
		names = append(names, c)
	}
	return NewTable(Compile("bench", offers, codes, nil)), names
}

func tableMemory(b *testing.B, build func(int) (*Table, []string), n int) {
	tbl, _ := build(n)
	raw, err := json.Marshal(tbl.Snapshot())
	if err != nil {
		b.Fatal(err)
	}
	tbl = nil
	runtime.GC()
	runtime.GC()
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var s Snapshot
		if err := json.Unmarshal(raw, &s); err != nil {
			b.Fatal(err)
		}
		t := NewTable(s)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(t.Len()), "bytes/code")
		b.ReportMetric(float64(len(raw))/float64(t.Len()), "wire-bytes/code")
		runtime.KeepAlive(t)
	}
}

func TestAmountText(t *testing.T) {
	fixed := Amount{Value: decimal.RequireFromString("8.00")}
	pct := Amount{Percent: true, Value: decimal.RequireFromString("10")}
	if got := fixed.Text(decimal.RequireFromString("3")); got != "8.00" {
		t.Errorf("fixed keeps its scale: %s", got)
	}
	if got := pct.Text(decimal.RequireFromString("19.99")); got != "1.999" {
		t.Errorf("percent: %s", got)
	}
}

// FuzzSnapshotDecode feeds arbitrary bytes to what a tracker does with a
// snapshot file or stream line: decode, build, look up. Nothing may panic.
func FuzzSnapshotDecode(f *testing.F) {
	good, _ := json.Marshal(world().Snapshot())
	f.Add(good)
	f.Add([]byte(`{"version":"v","offers":[{"ref":"a/b","id":1,"goals":[]}],"codes":[{"folded":"X","entries":[{"code":"X","offerRef":"a/b"}]}]}`))
	f.Add([]byte(`{"offers":[{"ref":"a/b","goals":[{"id":1}],"defaultGoal":5}],"codes":[{"folded":"A","entries":[{"offerRef":"a/b"}]}]}`))
	f.Add([]byte(`{"offers":[{"ref":"a/b","id":1,"enabled":true,"goals":[],"defaultGoal":3}],"codes":[{"folded":"A","entries":[{"code":"A","offerRef":"a/b"}]}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Snapshot
		if err := json.Unmarshal(b, &s); err != nil {
			return
		}
		tbl := NewTable(s)
		for _, g := range s.Codes {
			tbl.Lookup(&Query{Code: g.Folded, At: t0})
			tbl.Lookup(&Query{Code: g.Folded, GoalAlias: "sale", OfferID: 1, At: t0})
		}
		_ = tbl.Snapshot()
	})
}

// FuzzApplyDelta applies arbitrary deltas to a real table: nothing may
// panic, the old table must not change, and a deleted group must be gone.
func FuzzApplyDelta(f *testing.F) {
	d, _ := json.Marshal(Delta{Version: "v2", DeletedOffers: []string{"shop/summer"}, Codes: []CodeGroup{{Folded: "PROMO22"}, {Folded: "NEW", Entries: []Entry{{Code: "new", OfferRef: "shop/winter"}}}}})
	f.Add(d)
	f.Add([]byte(`{"offers":[{"ref":"shop/summer","id":7,"enabled":true,"goals":[]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Delta
		if err := json.Unmarshal(b, &d); err != nil {
			return
		}
		before := world()
		want := before.Snapshot()
		after := before.Apply(d)
		for _, g := range d.Codes {
			after.Lookup(&Query{Code: g.Folded, At: t0})
		}
		last := map[string]int{}
		for _, g := range d.Codes {
			last[g.Folded] = len(g.Entries)
		}
		for f, n := range last {
			if n == 0 && after.Group(f) != nil {
				t.Fatalf("deleted group %q still present", f)
			}
		}
		got, _ := json.Marshal(before.Snapshot())
		w, _ := json.Marshal(want)
		if string(got) != string(w) {
			t.Fatal("Apply changed the old table")
		}
	})
}

// TestWriteSnapshotRoundTrip: the streamed snapshot decodes to the table.
func TestWriteSnapshotRoundTrip(t *testing.T) {
	for _, tbl := range []*Table{world(), NewTable(Snapshot{Version: "empty"}),
		world().Apply(Delta{Version: "v2", Storefronts: []Storefront{{Ref: "shop/acme", Platform: PlatformShopify, Shop: "acme.myshopify.com",
			Secret: []byte("s3cret"), OfferRefs: []string{"shop/summer"}, Amount: "total"}}})} {
		var buf bytes.Buffer
		if err := tbl.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		var s Snapshot
		if err := json.Unmarshal(buf.Bytes(), &s); err != nil {
			t.Fatalf("%v in %s", err, buf.Bytes())
		}
		want, _ := json.Marshal(tbl.Snapshot())
		got, _ := json.Marshal(NewTable(s).Snapshot())
		if string(got) != string(want) {
			t.Fatalf("streamed snapshot differs:\n%s\n%s", got, want)
		}
	}
}

// TestApplyMatchesModel applies random deltas (adds, deletes, re-adds,
// replaced groups, a code repeated in one delta, offers, storefronts) and
// checks each table against a plain map, and that applying left every
// earlier table as it was.
func TestApplyMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string][]Entry{}
	tbl := NewTable(Snapshot{Version: "v0"})
	type kept struct {
		tbl  *Table
		json string
	}
	var history []kept
	const pool = 3000
	for v := 1; v <= 60; v++ {
		d := Delta{Version: fmt.Sprintf("v%d", v)}
		for range rng.IntN(2000) {
			f := fmt.Sprintf("K%04d", rng.IntN(pool))
			g := CodeGroup{Folded: f}
			if rng.IntN(3) > 0 {
				for e := range 1 + rng.IntN(2) {
					g.Entries = append(g.Entries, Entry{Code: f, Ref: fmt.Sprintf("ns/promocodeset/s%d", v), OfferRef: fmt.Sprintf("ns/o%d", e), AffiliateID: int64(v)})
				}
			}
			d.Codes = append(d.Codes, g)
			if len(g.Entries) == 0 {
				delete(model, f)
			} else {
				model[f] = g.Entries
			}
		}
		d.Offers = []Offer{{Ref: fmt.Sprintf("ns/o%d", v%3), ID: int64(v), Currency: "USD", Enabled: true, Goals: []Goal{{ID: 1, Status: "approved"}}}}
		if v%5 == 0 {
			d.DeletedOffers = []string{"ns/o1"}
			d.DeletedStorefronts = []string{"ns/sf"}
		} else {
			d.Storefronts = []Storefront{{Ref: "ns/sf", Platform: PlatformWooCommerce, Shop: "https://shop.example", OfferRefs: []string{"ns/o0"}, Amount: fmt.Sprint(v)}}
		}
		tbl = tbl.Apply(d)
		if tbl.Len() != len(model) {
			t.Fatalf("v%d: Len %d, model %d", v, tbl.Len(), len(model))
		}
		for i := range pool {
			f := fmt.Sprintf("K%04d", i)
			if !slices.Equal(tbl.Group(f), model[f]) {
				t.Fatalf("v%d: group %s = %v, model %v", v, f, tbl.Group(f), model[f])
			}
		}
		if got := tbl.Storefront("ns/sf"); (v%5 == 0) != (got == nil) {
			t.Fatalf("v%d: storefront %v", v, got)
		}
		b, _ := json.Marshal(tbl.Snapshot())
		history = append(history, kept{tbl, string(b)})
	}
	for i, h := range history {
		if b, _ := json.Marshal(h.tbl.Snapshot()); string(b) != h.json {
			t.Fatalf("table v%d changed after later deltas", i+1)
		}
	}
}

// TestWrittenCodesSurviveMerges: codes written other than their folded form
// (which a leaf keeps after its keys) come back as written through deltas
// that add, replace and delete codes around them, in leaves with and
// without such codes.
func TestWrittenCodesSurviveMerges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[string][]Entry{}
	tbl := NewTable(Snapshot{Version: "v0"})
	const pool = 200000 // ~3 codes a leaf
	for v := 1; v <= 30; v++ {
		d := Delta{Version: fmt.Sprintf("v%d", v)}
		for range 3000 {
			f := fmt.Sprintf("K%06d", rng.IntN(pool))
			g := CodeGroup{Folded: f}
			if rng.IntN(4) > 0 {
				for e := range 1 + rng.IntN(2) {
					c := f
					if rng.IntN(5) == 0 {
						c = "k" + f[1:]
					}
					g.Entries = append(g.Entries, Entry{Code: c, Ref: fmt.Sprintf("ns/promocodeset/s%d", v%4), OfferRef: fmt.Sprintf("ns/o%d", e),
						AffiliateID: int64(v), Start: Date{int64(rng.IntN(3))}})
				}
			}
			d.Codes = append(d.Codes, g)
			if len(g.Entries) == 0 {
				delete(model, f)
			} else {
				model[f] = g.Entries
			}
		}
		tbl = tbl.Apply(d)
		if tbl.Len() != len(model) {
			t.Fatalf("v%d: Len %d, model %d", v, tbl.Len(), len(model))
		}
	}
	for f, es := range model {
		if got := tbl.Group(f); !slices.Equal(got, es) {
			t.Fatalf("group %s = %v, model %v", f, got, es)
		}
	}
	again := NewTable(streamed(t, tbl))
	for f, es := range model {
		if got := again.Group(f); !slices.Equal(got, es) {
			t.Fatalf("rebuilt: group %s = %v, model %v", f, got, es)
		}
	}
}
