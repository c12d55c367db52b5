/*
Copyright 2026 The promo-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons shared by Offer and PromoCode.
const (
	// ConditionReady is true when the object is routed by trackers.
	ConditionReady = "Ready"
	// ConditionAccepted is true when a PromoCode holds its claim on the code.
	ConditionAccepted = "Accepted"
	// ConditionStalled is present, and true, only while the object cannot
	// become Ready until someone changes it or what it collides with: a
	// PromoCode not accepted, an Offer whose id an older Offer owns or whose
	// spec does not compile. kstatus (Flux, kubectl wait, cli-utils) reads it
	// as Failed; Ready=False without it is InProgress.
	ConditionStalled = "Stalled"
)

// GoalStatus is the default status of conversions recorded for a goal.
// +kubebuilder:validation:Enum=approved;pending
type GoalStatus string

const (
	GoalStatusApproved GoalStatus = "approved"
	GoalStatusPending  GoalStatus = "pending"
)

// Money is a fixed amount or a percentage of the order amount, as exact decimal strings.
// +kubebuilder:validation:XValidation:rule="has(self.fixed) != has(self.percent)",message="set exactly one of fixed (an amount like \"5.00\") or percent (like \"10\")"
type Money struct {
	// fixed is an amount in the offer's currency, e.g. "5.00".
	// +optional
	// +kubebuilder:validation:MaxLength=24
	// +kubebuilder:validation:Pattern=`^(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$`
	Fixed *string `json:"fixed,omitempty"`
	// percent is a share of the conversion amount, "0" to "100", e.g. "12.5".
	// +optional
	// +kubebuilder:validation:MaxLength=10
	// +kubebuilder:validation:Pattern=`^(100(\.0{1,6})?|[1-9]?[0-9](\.[0-9]{1,6})?)$`
	Percent *string `json:"percent,omitempty"`
}

// Goal is one conversion type of an offer (sale, lead, install...).
type Goal struct {
	// id is the goal_id of postbacks; unique within the offer.
	// +required
	// +kubebuilder:validation:Minimum=1
	ID int64 `json:"id"`
	// alias is the goal_alias of postbacks; unique within the offer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9_-]{1,64}$`
	Alias string `json:"alias"`
	// name is a human-readable name.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name,omitempty"`
	// default marks the goal used when a postback names no goal; exactly one goal is the default.
	// +optional
	Default bool `json:"default,omitempty"`
	// payout is what the affiliate earns per conversion.
	// +required
	Payout Money `json:"payout"`
	// revenue is what the advertiser pays per conversion.
	// +required
	Revenue Money `json:"revenue"`
	// status is the default status of new conversions: approved or pending.
	// +optional
	// +kubebuilder:default=approved
	Status GoalStatus `json:"status,omitempty"`
}

// SecretKeyRef names a key of a Secret in the Offer's namespace.
type SecretKeyRef struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// key is the key within the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// PromoCodeTracking is the "Promo Codes" section of an offer's tracking settings.
type PromoCodeTracking struct {
	// enabled is the "Promo Codes" toggle: when false the offer's codes are Inactive.
	// +optional
	// +kubebuilder:default=false
	Enabled bool `json:"enabled"`
}

// Tracking holds how conversions of the offer are tracked.
type Tracking struct {
	// promoCodes configures promo-code attribution.
	// +optional
	PromoCodes PromoCodeTracking `json:"promoCodes,omitempty"`
	// tokenSecretRef, when set, requires postbacks for this offer to carry token=<secret value>.
	// +optional
	TokenSecretRef *SecretKeyRef `json:"tokenSecretRef,omitempty"`
}

// OfferSpec defines an advertiser's offer.
// +kubebuilder:validation:XValidation:rule="self.goals.filter(g, has(g.default) && g.default).size() == 1",message="exactly one goal must have default: true"
// +kubebuilder:validation:XValidation:rule="self.goals.all(g, self.goals.exists_one(h, h.alias == g.alias))",message="goal aliases must be unique within the offer"
type OfferSpec struct {
	// id is the offer_id of postbacks; unique in the cluster.
	// +required
	// +kubebuilder:validation:Minimum=1
	ID int64 `json:"id"`
	// title is a human-readable title shown to affiliates.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Title string `json:"title,omitempty"`
	// currency is the ISO 4217 code of amounts, payouts and revenues.
	// +optional
	// +kubebuilder:default=USD
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=3
	// +kubebuilder:validation:Pattern=`^[A-Z]{3}$`
	Currency string `json:"currency,omitempty"`
	// tracking configures attribution of the offer.
	// +optional
	Tracking Tracking `json:"tracking,omitempty"`
	// goals are the conversion types of the offer; ids and aliases are unique, exactly one is the default.
	// +required
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Goals []Goal `json:"goals"`
}

// OfferStatus is the observed state of an Offer.
type OfferStatus struct {
	// observedGeneration is the generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready (reasons Valid, DuplicateOfferID, TokenSecretMissing, InvalidSpec)
	// and, while an older Offer owns the id or the spec does not compile, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=offer,categories=promo
// +kubebuilder:printcolumn:name="ID",type=integer,JSONPath=`.spec.id`
// +kubebuilder:printcolumn:name="Title",type=string,JSONPath=`.spec.title`,priority=1
// +kubebuilder:printcolumn:name="Promo Codes",type=boolean,JSONPath=`.spec.tracking.promoCodes.enabled`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Offer is an advertiser's offer that promo codes attribute conversions to.
type Offer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired offer.
	// +required
	Spec OfferSpec `json:"spec"`
	// status is the observed state. Until the first reconcile it reads
	// observedGeneration 0, so kstatus sees the object InProgress, not Current.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status OfferStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// OfferList contains a list of Offer.
type OfferList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Offer `json:"items"`
}
