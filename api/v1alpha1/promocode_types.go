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

// PromoCodeState is the life-cycle state of a PromoCode, shown by kubectl.
// +kubebuilder:validation:Enum=Active;Scheduled;Expired;Rejected;Inactive
type PromoCodeState string

const (
	// StateActive: accepted, offer ready with promo codes enabled, within its dates.
	StateActive PromoCodeState = "Active"
	// StateScheduled: like Active, but startDate is in the future.
	StateScheduled PromoCodeState = "Scheduled"
	// StateExpired: like Active, but endDate has passed.
	StateExpired PromoCodeState = "Expired"
	// StateRejected: the code is held by another PromoCode (Accepted=False).
	StateRejected PromoCodeState = "Rejected"
	// StateInactive: the offer is missing, not Ready, or has promo codes disabled.
	StateInactive PromoCodeState = "Inactive"
)

// LocalOfferReference names an Offer in the PromoCode's namespace.
type LocalOfferReference struct {
	// name is the Offer's metadata.name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// PromoCodeSpec is a promo code given to one affiliate for one offer.
// +kubebuilder:validation:XValidation:rule="!has(self.startDate) || !has(self.endDate) || self.endDate > self.startDate",message="endDate must be after startDate"
type PromoCodeSpec struct {
	// code is what the customer types at checkout: 1-64 Latin letters and digits,
	// compared case-insensitively. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]+$')",message="code must contain only Latin letters (A-Z, a-z) and digits (0-9), 1 to 64 characters"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="code is immutable; delete the PromoCode and create a new one to change it"
	Code string `json:"code"`
	// offerRef names the Offer, in the same namespace, the code attributes conversions to. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="offerRef is immutable; delete the PromoCode and create a new one to change it"
	OfferRef LocalOfferReference `json:"offerRef"`
	// affiliateID is the affiliate credited with the code's conversions. Immutable.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="affiliateID is immutable; delete the PromoCode and create a new one to change it"
	AffiliateID int64 `json:"affiliateID"`
	// startDate is the first instant the code is valid (inclusive).
	// +optional
	StartDate *metav1.Time `json:"startDate,omitempty"`
	// endDate is the instant the code stops being valid (exclusive); must be after startDate.
	// +optional
	EndDate *metav1.Time `json:"endDate,omitempty"`
	// description is shown to the affiliate, e.g. "20% off everything".
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
}

// PromoCodeStatus is the observed state of a PromoCode.
type PromoCodeStatus struct {
	// state is Active, Scheduled, Expired, Rejected or Inactive.
	// +optional
	State PromoCodeState `json:"state,omitempty"`
	// offerID is the spec.id of the referenced Offer, when it exists.
	// +optional
	OfferID int64 `json:"offerID,omitempty"`
	// observedGeneration is the generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Accepted (the claim on the code), Ready (routed by trackers)
	// and, while the code is not accepted (Rejected), Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName={promocode,pc},categories=promo
// +kubebuilder:selectablefield:JSONPath=`.spec.code`
// +kubebuilder:printcolumn:name="Code",type=string,JSONPath=`.spec.code`
// +kubebuilder:printcolumn:name="Offer",type=string,JSONPath=`.spec.offerRef.name`
// +kubebuilder:printcolumn:name="Offer ID",type=integer,JSONPath=`.status.offerID`,priority=1
// +kubebuilder:printcolumn:name="Affiliate",type=integer,JSONPath=`.spec.affiliateID`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Start",type=date,JSONPath=`.spec.startDate`,priority=1
// +kubebuilder:printcolumn:name="End",type=date,JSONPath=`.spec.endDate`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// PromoCode gives one affiliate a code that attributes conversions of one Offer.
type PromoCode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired promo code.
	// +required
	Spec PromoCodeSpec `json:"spec"`
	// status is the observed state. Until the first reconcile it reads
	// observedGeneration 0, so kstatus sees the object InProgress, not Current.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status PromoCodeStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PromoCodeList contains a list of PromoCode.
type PromoCodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PromoCode `json:"items"`
}
