package routing

import (
	"strings"
	"testing"
	"time"
)

func TestResolveCodes(t *testing.T) {
	type want struct {
		accepted bool
		reason   string
		holder   string // namespace/name named in the message
	}
	for _, tc := range []struct {
		name  string
		codes []*Claim
		want  map[string]want
	}{{
		name: "one affiliate reuses a code on two offers",
		codes: []*Claim{
			code("shop", "a", "PROMO22", "summer", 42, 0),
			code("shop", "b", "promo22", "winter", 42, time.Second),
		},
		want: map[string]want{"a": {true, ReasonCodeAccepted, ""}, "b": {true, ReasonCodeAccepted, ""}},
	}, {
		name: "same code twice on one offer: the younger is a duplicate",
		codes: []*Claim{
			code("shop", "b", "Promo22", "summer", 42, time.Second),
			code("shop", "a", "PROMO22", "summer", 42, 0),
		},
		want: map[string]want{"a": {true, ReasonCodeAccepted, ""}, "b": {false, ReasonDuplicateCode, "shop/a"}},
	}, {
		name: "another affiliate loses on any offer",
		codes: []*Claim{
			code("shop", "mine", "PROMO22", "summer", 42, 0),
			code("other", "theirs", "promo22", "winter", 7, time.Second),
		},
		want: map[string]want{"mine": {true, ReasonCodeAccepted, ""}, "theirs": {false, ReasonCodeOwnedByAnotherAffiliate, "shop/mine"}},
	}, {
		name: "equal creation time: namespace then name decide",
		codes: []*Claim{
			code("b-ns", "x", "C1", "o", 1, 0),
			code("a-ns", "z", "C1", "o", 2, 0),
			code("a-ns", "y", "C1", "o", 3, 0),
		},
		want: map[string]want{"y": {true, ReasonCodeAccepted, ""}, "z": {false, ReasonCodeOwnedByAnotherAffiliate, "a-ns/y"}, "x": {false, ReasonCodeOwnedByAnotherAffiliate, "a-ns/y"}},
	}, {
		name: "another affiliate's rejected code does not hold the offer",
		codes: []*Claim{
			code("shop", "owner", "C1", "summer", 42, 0),
			code("shop", "intruder", "C1", "winter", 7, time.Second),
			code("shop", "later", "C1", "winter", 42, 2*time.Second),
		},
		want: map[string]want{"owner": {true, ReasonCodeAccepted, ""}, "intruder": {false, ReasonCodeOwnedByAnotherAffiliate, "shop/owner"}, "later": {true, ReasonCodeAccepted, ""}},
	}, {
		name: "the holder deleted: the next one is promoted",
		codes: []*Claim{
			code("other", "theirs", "promo22", "winter", 7, time.Second),
		},
		want: map[string]want{"theirs": {true, ReasonCodeAccepted, ""}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := ResolveCodes(tc.codes)
			if len(got) != len(tc.codes) {
				t.Fatalf("got %d verdicts for %d codes", len(got), len(tc.codes))
			}
			for _, pc := range tc.codes {
				v, w := got[pc.Ref], tc.want[pc.Ref.Name]
				if v.Accepted != w.accepted || v.Reason != w.reason {
					t.Errorf("%s: got accepted=%v reason=%s, want %v %s (%s)", pc.Ref.Name, v.Accepted, v.Reason, w.accepted, w.reason, v.Message)
				}
				if w.holder != "" && (v.Holder.String() != w.holder || !strings.Contains(v.Message, w.holder)) {
					t.Errorf("%s: holder %s, message %q; want holder %s named", pc.Ref.Name, v.Holder, v.Message, w.holder)
				}
			}
		})
	}
}

func TestRejectionMessagesNameAffiliate(t *testing.T) {
	v := ResolveCodes([]*Claim{
		code("shop", "mine", "PROMO22", "summer", 42, 0),
		code("other", "theirs", "promo22", "winter", 7, time.Second),
	})[Ref{Namespace: "other", Name: "theirs"}]
	if !strings.Contains(v.Message, "affiliate 42") || !strings.Contains(v.Message, "shop/mine") {
		t.Fatalf("message %q should name the holder and its affiliate", v.Message)
	}
}

func TestWouldReject(t *testing.T) {
	existing := []*Claim{code("shop", "mine", "PROMO22", "summer", 42, 0)}
	now := t0.Add(time.Hour)

	fresh := code("shop", "theirs", "Promo22", "winter", 7, 0)
	fresh.Rank.Created = time.Time{}
	if v, rejected := WouldReject(existing, fresh, now); !rejected || v.Reason != ReasonCodeOwnedByAnotherAffiliate {
		t.Fatalf("another affiliate: got rejected=%v %+v", rejected, v)
	}
	same := code("shop", "again", "PROMO22", "summer", 42, 0)
	same.Rank.Created = time.Time{}
	if v, rejected := WouldReject(existing, same, now); !rejected || v.Reason != ReasonDuplicateCode {
		t.Fatalf("same offer: got rejected=%v %+v", rejected, v)
	}
	reuse := code("shop", "reuse", "promo22", "winter", 42, 0)
	reuse.Rank.Created = time.Time{}
	if _, rejected := WouldReject(existing, reuse, now); rejected {
		t.Fatal("reuse on another offer by the owner must be allowed")
	}
	// An update of the holder itself is compared against the others only.
	if _, rejected := WouldReject(existing, existing[0], now); rejected {
		t.Fatal("the holder must not conflict with itself")
	}
}

func TestResolveOfferIDs(t *testing.T) {
	older := offer("shop", "summer", 7, true, 0)
	younger := offer("other", "copy", 7, true, time.Second)
	alone := offer("shop", "winter", 8, true, 2*time.Second)
	got := ResolveOfferIDs([]*OfferSpec{younger, alone, older})
	if v := got[older.Ref]; !v.Ready || v.Reason != ReasonValid {
		t.Errorf("older: %+v", v)
	}
	if v := got[alone.Ref]; !v.Ready {
		t.Errorf("alone: %+v", v)
	}
	if v := got[younger.Ref]; v.Ready || v.Reason != ReasonDuplicateOfferID || !strings.Contains(v.Message, "shop/summer") {
		t.Errorf("younger: %+v", v)
	}

	bad := offer("shop", "bad", 9, true, 0)
	bad.Goals[0].Payout = Money{}
	if v := ResolveOfferIDs([]*OfferSpec{bad})[bad.Ref]; v.Ready || v.Reason != ReasonInvalidSpec {
		t.Errorf("invalid money: %+v", v)
	}
}

func TestWithToken(t *testing.T) {
	o := offer("shop", "vip", 9, true, 0)
	valid := OfferVerdict{Ready: true, Reason: ReasonValid}
	if v := WithToken(valid, o, false); !v.Ready {
		t.Errorf("no tokenSecretRef: %+v", v)
	}
	o.Token = &TokenRef{Name: "vip-token", Key: "token"}
	if v := WithToken(valid, o, false); v.Ready || v.Reason != ReasonTokenSecretMissing || !strings.Contains(v.Message, "shop/vip-token") {
		t.Errorf("missing secret: %+v", v)
	}
	if v := WithToken(valid, o, true); !v.Ready {
		t.Errorf("secret found: %+v", v)
	}
	dup := OfferVerdict{Reason: ReasonDuplicateOfferID}
	if v := WithToken(dup, o, false); v.Reason != ReasonDuplicateOfferID {
		t.Errorf("a duplicate stays a duplicate: %+v", v)
	}
}

func TestStatusOf(t *testing.T) {
	start, end := t0.Add(24*time.Hour), t0.Add(48*time.Hour)
	accepted := CodeVerdict{Accepted: true, Reason: ReasonCodeAccepted}
	ready := OfferState{Exists: true, ID: 7, Ready: true, Enabled: true}
	for _, tc := range []struct {
		name     string
		verdict  CodeVerdict
		offer    OfferState
		now      time.Time
		state    State
		readyWhy string
		next     time.Time
		noDates  bool
	}{
		{"scheduled until start", accepted, ready, t0, StateScheduled, ReasonRouted, start, false},
		{"active at start (inclusive)", accepted, ready, start, StateActive, ReasonRouted, end, false},
		{"expired at end (exclusive)", accepted, ready, end, StateExpired, ReasonRouted, time.Time{}, false},
		{"active forever without dates", accepted, ready, t0, StateActive, ReasonRouted, time.Time{}, true},
		{"rejected", CodeVerdict{Reason: ReasonDuplicateCode}, ready, t0, StateRejected, ReasonNotAccepted, time.Time{}, false},
		{"offer missing", accepted, OfferState{}, t0, StateInactive, ReasonOfferNotFound, time.Time{}, false},
		{"offer not ready", accepted, OfferState{Exists: true, ID: 7, Enabled: true}, t0, StateInactive, ReasonOfferNotReady, time.Time{}, false},
		{"promo codes disabled", accepted, OfferState{Exists: true, ID: 7, Ready: true}, t0, StateInactive, ReasonPromoCodesDisabled, time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := code("shop", "c", "C1", "summer", 42, 0)
			if !tc.noDates {
				dated(pc, start, end)
			}
			s := StatusOf(pc, tc.verdict, tc.offer, tc.now)
			if s.State != tc.state || s.Ready.Reason != tc.readyWhy || !s.NextTransition.Equal(tc.next) {
				t.Fatalf("got %s ready=%s next=%v, want %s %s %v", s.State, s.Ready.Reason, s.NextTransition, tc.state, tc.readyWhy, tc.next)
			}
			if wantReady := tc.readyWhy == ReasonRouted; (s.Ready.Status == ConditionTrue) != wantReady {
				t.Fatalf("Ready status %s", s.Ready.Status)
			}
			if (s.Accepted.Status == ConditionTrue) != tc.verdict.Accepted || s.Accepted.Type != ConditionAccepted {
				t.Fatalf("Accepted %+v", s.Accepted)
			}
			if s.OfferID != tc.offer.ID {
				t.Fatalf("offerID %d", s.OfferID)
			}
		})
	}
}
