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

// MaxPromoCodeSetEntries is the most codes one PromoCodeSet carries (SPEC §2).
const MaxPromoCodeSetEntries = 5000

// MaxRejectedCodes is the most entries status.rejectedCodes lists.
const MaxRejectedCodes = 100

// PromoCodeSetEntry is one code of a set: a claim exactly like a PromoCode's.
// Its dates and description, when unset, are the set's.
// +kubebuilder:validation:XValidation:rule="!has(self.startDate) || !has(self.endDate) || self.endDate > self.startDate",message="endDate must be after startDate"
type PromoCodeSetEntry struct {
	// code is what the customer types at checkout: 1-64 Latin letters and digits,
	// compared case-insensitively; unique in the set by folded code.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]+$`
	Code string `json:"code"`
	// affiliateID is the affiliate credited with the code's conversions.
	// +required
	// +kubebuilder:validation:Minimum=1
	AffiliateID int64 `json:"affiliateID"`
	// startDate overrides the set's startDate (inclusive).
	// +optional
	StartDate *metav1.Time `json:"startDate,omitempty"`
	// endDate overrides the set's endDate (exclusive).
	// +optional
	EndDate *metav1.Time `json:"endDate,omitempty"`
	// description overrides the set's description.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
}

// PromoCodeSetSpec is up to 5,000 codes of one Offer.
// +kubebuilder:validation:XValidation:rule="!has(self.startDate) || !has(self.endDate) || self.endDate > self.startDate",message="endDate must be after startDate"
type PromoCodeSetSpec struct {
	// offerRef names the Offer, in the same namespace, every entry attributes
	// conversions to. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="offerRef is immutable; delete the PromoCodeSet and create a new one to change it"
	OfferRef LocalOfferReference `json:"offerRef"`
	// startDate is every entry's first valid instant unless the entry sets its own.
	// +optional
	StartDate *metav1.Time `json:"startDate,omitempty"`
	// endDate is every entry's end (exclusive) unless the entry sets its own.
	// +optional
	EndDate *metav1.Time `json:"endDate,omitempty"`
	// description is every entry's description unless the entry sets its own.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
	// The list is atomic, not a map keyed by code: the API server keeps one
	// managed-fields record for it instead of one per entry, which at 5,000
	// entries halves the stored object and its watch events and a third to a
	// half of the API server's CPU per write (docs/catalogue.md).

	// codes are the set's entries: 1 to 5000, unique by folded code (checked by
	// the webhook and the controller: a later entry with the code of an earlier
	// one is DuplicateCode). The list is atomic: a server-side apply (kubectl
	// promo, a GitOps tool) replaces it whole.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5000
	// +listType=atomic
	Codes []PromoCodeSetEntry `json:"codes"`
}

// RejectedCode is one entry that lost its claim, as status lists it.
type RejectedCode struct {
	// code as written in the entry.
	Code string `json:"code"`
	// reason: CodeOwnedByAnotherAffiliate, DuplicateCode or InvalidSpec.
	Reason string `json:"reason"`
	// message names the holder (namespace/name, affiliate) or what to fix.
	Message string `json:"message"`
}

// PromoCodeSetStatus is the observed state of a PromoCodeSet.
type PromoCodeSetStatus struct {
	// offerID is the spec.id of the referenced Offer, when it exists.
	// +optional
	OfferID int64 `json:"offerID,omitempty"`
	// codes is the number of entries.
	// +optional
	Codes int32 `json:"codes"`
	// active is the number of entries that are accepted, on a Ready offer with
	// promo codes enabled, and within their dates.
	// +optional
	Active int32 `json:"active"`
	// rejected is the number of entries that lost their claim.
	// +optional
	Rejected int32 `json:"rejected"`
	// rejectedCodes lists up to 100 rejected entries.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	// +listType=atomic
	RejectedCodes []RejectedCode `json:"rejectedCodes,omitempty"`
	// observedGeneration is the generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready (every entry accepted and servable) and, while some
	// entry is rejected, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=promocodeset,categories=promo
// +kubebuilder:printcolumn:name="Offer",type=string,JSONPath=`.spec.offerRef.name`
// +kubebuilder:printcolumn:name="Codes",type=integer,JSONPath=`.status.codes`
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.active`
// +kubebuilder:printcolumn:name="Rejected",type=integer,JSONPath=`.status.rejected`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// PromoCodeSet carries up to 5,000 codes of one Offer, like an EndpointSlice
// carries endpoints. Every entry is a claim exactly like a PromoCode.
type PromoCodeSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired set of codes.
	// +required
	Spec PromoCodeSetSpec `json:"spec"`
	// status is the observed state.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status PromoCodeSetStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PromoCodeSetList contains a list of PromoCodeSet.
type PromoCodeSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PromoCodeSet `json:"items"`
}
