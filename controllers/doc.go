// Package controllers holds promo-operator's reconcilers and admission
// webhooks. They are thin: read from the cache through internal/kube, ask
// internal/routing, write status. (The design card keeps kubebuilder's older
// top-level layout; `kubebuilder create api` would scaffold into
// internal/controller.)
package controllers
