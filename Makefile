# promo-operator — run `make help` for the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
K8S_BINS ?= $(LOCALBIN)/k8s
export KUBEBUILDER_ASSETS ?= $(K8S_BINS)
export PATH := $(K8S_BINS):$(PATH)

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
KUSTOMIZE ?= $(LOCALBIN)/kustomize
GINKGO ?= $(LOCALBIN)/ginkgo
KUBECTL ?= $(K8S_BINS)/kubectl

CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
KUSTOMIZE_VERSION ?= v5.8.1
GINKGO_VERSION ?= $(shell go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)

# Packages tested with plain `go test` (the envtest suite runs under ginkgo).
GO_TEST_PKGS = $(shell go list ./... | grep -v -e /controllers -e /test/e2e -e /test/chaos -e /test/browser -e /test/cluster)

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: dev
dev: ## Run the whole product locally: control plane, PostgreSQL, manager, tracker, samples (Ctrl-C stops it).
	go build -o $(LOCALBIN)/dev ./hack/dev && exec $(LOCALBIN)/dev

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs, RBAC and webhook configuration.
	$(CONTROLLER_GEN) crd rbac:roleName=manager-role webhook paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases

.PHONY: verify-generated
verify-generated: generate manifests ## Fail when generated files are not committed.
	@git diff --exit-code -- api config || { echo "generated files changed: run 'make generate manifests' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: k8s-bins
k8s-bins: ## Build kube-apiserver, etcd and kubectl from Go modules into bin/k8s.
	@bash hack/build-k8s-bins.sh >/dev/null

.PHONY: test
test: k8s-bins verify-generated vet $(GINKGO) ## Every test: unit, envtest, tracker and portal on PostgreSQL, chaos (short), end to end and the browser test.
	go test -race -count=1 -timeout 20m $(GO_TEST_PKGS)
	@# Fuzz budgets are counts, not durations: a -fuzztime duration can fail with
	@# "context deadline exceeded" on a loaded machine (golang/go#75804, fixed in Go 1.27).
	go test -count=1 -run '^$$' -fuzz FuzzFold -fuzztime 80000x ./internal/routing
	go test -count=1 -run '^$$' -fuzz FuzzSnapshotDecode -fuzztime 40000x ./internal/routing
	go test -count=1 -run '^$$' -fuzz FuzzApplyDelta -fuzztime 25000x ./internal/routing
	go test -count=1 -run '^$$' -fuzz FuzzParseParams -fuzztime 30000x ./tracker
	go test -count=1 -run '^$$' -fuzz FuzzParseQueryMatchesURL -fuzztime 30000x ./tracker
	$(GINKGO) --race --randomize-all --fail-on-empty --timeout 20m ./controllers
	@bash hack/ensure-chromium.sh >/dev/null
	@# The whole-stack tests log every process start and stop; show the test lines, and on
	@# failure the last 300 lines of the full log (panics and stacks included).
	@mkdir -p $(LOCALBIN); rc=0; go test -count=1 -timeout 20m -v ./test/e2e ./test/chaos ./test/browser >$(LOCALBIN)/stack-tests.log 2>&1 || rc=$$?; \
	grep -E '^(=== RUN|--- |    |ok|FAIL|PASS|chaos:|panic)' $(LOCALBIN)/stack-tests.log; \
	if [ $$rc -ne 0 ]; then echo "--- last 300 lines of $(LOCALBIN)/stack-tests.log:"; tail -300 $(LOCALBIN)/stack-tests.log; exit $$rc; fi
	@if [ -n "$$SKIP_CLUSTER" ]; then \
	  echo "!!!!!!!! SKIP_CLUSTER is set: the cluster test (test/cluster: the deployment on a real node) was NOT run !!!!!!!!"; \
	else $(MAKE) --no-print-directory test-cluster; fi

.PHONY: test-cluster
test-cluster: ## The cluster test alone: make cluster, test/cluster against it, make cluster-down (KEEP_CLUSTER=1 keeps it up).
	@bash hack/test-cluster.sh

.PHONY: chaos
chaos: k8s-bins ## Fault test under load: PostgreSQL, tracker and manager restarts (CHAOS_DURATION, default 2m).
	CHAOS_DURATION=$${CHAOS_DURATION:-2m} go test -count=1 -timeout 30m -v -run TestNoAcknowledgedConversionLost ./test/chaos

.PHONY: bench
bench: k8s-bins ## Benchmarks against baselines; writes docs/benchmarks.md and charts.
	cd hack/bench && go run . -root ../.. $(BENCH_FLAGS)

##@ Build

.PHONY: build
build: ## Build manager, tracker, portal and the kubectl-promo plugin into bin/.
	go build -o $(LOCALBIN)/ ./cmd/...

.PHONY: run
run: ## Run the manager against the current kube context.
	go run ./cmd/manager --route-token-file=$${ROUTE_TOKEN_FILE:?set ROUTE_TOKEN_FILE}

.PHONY: images
images: ## Build manager, tracker, portal (and the node's pause) images as tarballs in bin/images — no daemon, no registry.
	@mkdir -p $(LOCALBIN)/images/bin
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o $(LOCALBIN)/images/bin/ ./cmd/manager ./cmd/tracker ./cmd/portal ./hack/images/pause
	go build -o $(LOCALBIN)/image-tool ./hack/images
	@for c in manager tracker portal pause; do $(LOCALBIN)/image-tool -bin $(LOCALBIN)/images/bin/$$c -ref promo-operator/$$c -out $(LOCALBIN)/images/$$c.tar; done

##@ Deployment

DEPLOY_DIR ?= config/default

.PHONY: cluster
cluster: images ## Start a real single-node Kubernetes here, deploy config/default to it (make deploy), apply the samples; writes .cluster/env.
	@bash hack/cluster/up.sh
	@bash hack/cluster-deploy.sh

.PHONY: cluster-down
cluster-down: ## Remove everything make cluster created and restore the host.
	@bash hack/cluster/down.sh

.PHONY: cluster-selftest
cluster-selftest: ## The bare node alone: up, Services, DNS, NetworkPolicy, webhook path, down, and a diff of the host before/after (node must be down).
	@bash hack/cluster/selftest.sh

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install CRDs into the current kube context.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove CRDs from the current kube context.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy everything to the current kube context (DEPLOY_DIR, default config/default).
	$(KUSTOMIZE) build $(DEPLOY_DIR) | $(KUBECTL) apply --server-side --force-conflicts --field-manager=promo-operator-deploy -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the deployment.
	$(KUSTOMIZE) build $(DEPLOY_DIR) | $(KUBECTL) delete --ignore-not-found -f -

##@ Tools (pinned, built from Go modules into bin/)

$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

$(GOLANGCI_LINT):
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

$(KUSTOMIZE):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

$(GINKGO):
	GOBIN=$(LOCALBIN) go install github.com/onsi/ginkgo/v2/ginkgo@$(GINKGO_VERSION)

