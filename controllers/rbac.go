package controllers

// RBAC of the manager's parts outside the reconcilers, kept here because
// `make manifests` reads markers from api/ and controllers/ only.
//
// The webhook serving certificate (internal/certs, --cert-rotation): the
// rotator updates the one Secret the manifests ship (it never creates one),
// and keeps the caBundle of the one ValidatingWebhookConfiguration. Names are
// the final ones, after config/default's namePrefix and namespace. Listing
// and watching need no names: Secrets are already listed cluster-wide for
// token Secrets (offer_controller.go), and webhook configurations are
// cluster-scoped objects the rotator's cache lists without a field selector.
//
// +kubebuilder:rbac:groups="",namespace=promo-system,resources=secrets,verbs=get;list;watch;update,resourceNames=promo-operator-webhook-server-cert
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;update;patch,resourceNames=promo-operator-validating-webhook-configuration
