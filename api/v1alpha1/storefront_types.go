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

// StorefrontPlatform is the shop software sending order webhooks.
// +kubebuilder:validation:Enum=shopify;woocommerce
type StorefrontPlatform string

const (
	PlatformShopify     StorefrontPlatform = "shopify"
	PlatformWooCommerce StorefrontPlatform = "woocommerce"
)

// StorefrontAmount chooses the order sum recorded as the conversion amount.
// +kubebuilder:validation:Enum=subtotal;total
type StorefrontAmount string

const (
	AmountSubtotal StorefrontAmount = "subtotal"
	AmountTotal    StorefrontAmount = "total"
)

// StorefrontSpec connects one shop's order webhooks to Offers (SPEC §8).
// +kubebuilder:validation:XValidation:rule="self.platform != 'shopify' || self.shop.matches('^[a-z0-9][a-z0-9-]{0,62}[.]myshopify[.]com$')",message="a shopify shop is its myshopify.com domain, e.g. acme.myshopify.com (the X-Shopify-Shop-Domain header)"
// +kubebuilder:validation:XValidation:rule="self.platform != 'woocommerce' || self.shop.matches('^https?://[^/?#\\\\s]+(/[^?#\\\\s]*)?$')",message="a woocommerce shop is the site URL WooCommerce sends in X-WC-Webhook-Source, e.g. https://shop.example.com/"
type StorefrontSpec struct {
	// platform is shopify or woocommerce.
	// +required
	Platform StorefrontPlatform `json:"platform"`
	// shop identifies the shop: for Shopify its myshopify.com domain
	// (X-Shopify-Shop-Domain), for WooCommerce its site URL (X-WC-Webhook-Source).
	// Unique per platform in the cluster.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Shop string `json:"shop"`
	// signingSecretRef names the Secret key, in the Storefront's namespace,
	// holding the webhook signing secret the shop signs deliveries with.
	// +required
	SigningSecretRef SecretKeyRef `json:"signingSecretRef"`
	// offerRefs are the Offers, in the same namespace, an order's codes are
	// looked up on, in order: the first offer holding the code wins.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	OfferRefs []LocalOfferReference `json:"offerRefs"`
	// goalAlias is the goal conversions are recorded for; empty: each offer's default goal.
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-z0-9_-]{1,64}$`
	GoalAlias string `json:"goalAlias,omitempty"`
	// amount is the order sum recorded: subtotal (after discounts, before
	// shipping and taxes) or total. Default subtotal.
	// +optional
	// +kubebuilder:default=subtotal
	Amount StorefrontAmount `json:"amount,omitempty"`
}

// StorefrontStatus is the observed state of a Storefront.
type StorefrontStatus struct {
	// observedGeneration is the generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready (reasons Valid, SecretMissing, OfferNotFound).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=storefront,categories=promo
// +kubebuilder:printcolumn:name="Platform",type=string,JSONPath=`.spec.platform`
// +kubebuilder:printcolumn:name="Shop",type=string,JSONPath=`.spec.shop`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Storefront connects one shop (Shopify or WooCommerce) to Offers: its order
// webhooks, received by trackers, record conversions for the discount codes
// orders carry.
type Storefront struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the shop and the offers it feeds.
	// +required
	Spec StorefrontSpec `json:"spec"`
	// status is the observed state.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status StorefrontStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// StorefrontList contains a list of Storefront.
type StorefrontList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Storefront `json:"items"`
}
