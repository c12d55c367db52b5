package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	trackingv1alpha1 "promocodes.dev/promo-operator/api/v1alpha1"
)

// ProbeGoalAlias is a goal alias no offer has. A tracker answers a postback
// naming it with 404 unknown_goal exactly when the code itself is routable,
// so probing with it proves a code is served without recording a conversion.
const ProbeGoalAlias = "devstack-probe"

// Reply is a tracker's JSON reply.
type Reply struct {
	HTTPStatus   int    `json:"-"`
	Status       string `json:"status"`
	ConversionID string `json:"conversion_id"`
	Reason       string `json:"reason"`
}

// Track sends GET /track/promo with params to a tracker and decodes the reply.
func Track(ctx context.Context, trackerURL string, params url.Values) (Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, trackerURL+"/track/promo?"+params.Encode(), nil)
	if err != nil {
		return Reply{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := Reply{HTTPStatus: resp.StatusCode}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("decoding reply %d %q: %w", resp.StatusCode, body, err)
	}
	return r, nil
}

// Servable reports whether the tracker routes code on offerID (0: any) now.
func Servable(ctx context.Context, trackerURL, code string, offerID int64) (bool, Reply, error) {
	p := url.Values{"code": {code}, "goal_alias": {ProbeGoalAlias}}
	if offerID != 0 {
		p.Set("offer_id", strconv.FormatInt(offerID, 10))
	}
	r, err := Track(ctx, trackerURL, p)
	return err == nil && r.Reason == "unknown_goal", r, err
}

// WaitServable polls until the tracker routes code on offerID.
func WaitServable(ctx context.Context, trackerURL, code string, offerID int64) error {
	var last Reply
	for {
		ok, r, _ := Servable(ctx, trackerURL, code, offerID)
		if ok {
			return nil
		}
		last = r
		select {
		case <-ctx.Done():
			return fmt.Errorf("code %s (offer %d) not servable at %s: last reply %d %s %s", code, offerID, trackerURL, last.HTTPStatus, last.Status, last.Reason)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitReconciled waits until every PromoCode and Offer has a status computed
// from its current generation.
func (s *Stack) WaitReconciled(ctx context.Context) error {
	for {
		done, err := s.reconciled(ctx)
		if err == nil && done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for Offers and PromoCodes to be reconciled: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Stack) reconciled(ctx context.Context) (bool, error) {
	var offers trackingv1alpha1.OfferList
	if err := s.Client.List(ctx, &offers); err != nil {
		return false, err
	}
	for _, o := range offers.Items {
		if o.Status.ObservedGeneration != o.Generation {
			return false, nil
		}
	}
	var codes trackingv1alpha1.PromoCodeList
	if err := s.Client.List(ctx, &codes, client.InNamespace("")); err != nil {
		return false, err
	}
	for _, pc := range codes.Items {
		if pc.Status.ObservedGeneration != pc.Generation || pc.Status.State == "" {
			return false, nil
		}
	}
	return true, nil
}
