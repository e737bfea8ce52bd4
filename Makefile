# pwreset-operator build and test entry points. `make test` is the one test command:
# on a fresh machine with only Rust and Go it builds everything the tests need.

SHELL := /bin/bash
.DEFAULT_GOAL := help

K8S_VERSION     := v1.36.3
HELM_VERSION    := v3.22.0
CARGO           ?= cargo
GO              ?= go
TARGET          := $(CURDIR)/target
CONTROL_PLANE   := $(TARGET)/control-plane/kube-control-plane
TOOLS_BIN       := $(TARGET)/tools/bin
KUBECTL         := $(TOOLS_BIN)/kubectl
HELM            := $(TOOLS_BIN)/helm
CP_SOURCES      := $(wildcard tests/control-plane/*.go) tests/control-plane/go.mod tests/control-plane/go.sum
CP_LDFLAGS      := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=36 \
	-X k8s.io/component-base/version.gitTreeState=clean

export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: check-toolchains
check-toolchains:
	@command -v $(GO) >/dev/null || { echo "error: Go is required to build the test control plane (Go 1.26+)"; exit 1; }
	@command -v $(CARGO) >/dev/null || { echo "error: Rust (cargo) is required"; exit 1; }

.PHONY: control-plane
control-plane: $(CONTROL_PLANE) $(KUBECTL) ## build the real kube-apiserver + etcd + controller-manager (and kubectl)

$(CONTROL_PLANE): $(CP_SOURCES) | check-toolchains
	@mkdir -p $(@D)
	cd tests/control-plane && $(GO) build -trimpath -ldflags "$(CP_LDFLAGS)" -o $@ .

# kubectl is the same multi-call binary, picked by its name.
$(KUBECTL): $(CONTROL_PLANE)
	@mkdir -p $(@D)
	ln -sf ../../control-plane/kube-control-plane $@

$(HELM): | check-toolchains
	@mkdir -p $(@D)
	GOBIN=$(TOOLS_BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: tools
tools: $(KUBECTL) $(HELM) ## build kubectl and helm from Go modules

.PHONY: build
build: ## build every binary of the workspace (release): operator, Graph emulator, benchmark
	$(CARGO) build --release --locked --workspace --bins

.PHONY: crds
crds: ## regenerate crds/ and the chart's copy from the Rust types
	$(CARGO) run --quiet --locked -p pwreset-operator --bin pwreset-operator -- crd > crds/passwordresetoperations.pwreset.dev.yaml
	$(CARGO) run --quiet --locked -p pwreset-operator --bin pwreset-operator -- crd password-reset > crds/passwordresets.pwreset.dev.yaml
	cp crds/passwordresetoperations.pwreset.dev.yaml crds/passwordresets.pwreset.dev.yaml charts/pwreset-operator/crds/

.PHONY: lint
lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test
test: control-plane tools lint ## everything: lint, unit tests, e2e tests against a real control plane
	@# The e2e tests spawn other members' binaries (graph-emulator), which cargo does not build for them.
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --workspace --locked --all-targets --no-fail-fast
	$(MAKE) chaos CHAOS_SIZE=$(TEST_CHAOS_SIZE)

# The fault suite in `make test`: the largest size whose run fits a cold `make test` in
# 40 minutes on 2 cores (README, "Development"). `make chaos` alone runs 1,000.
TEST_CHAOS_SIZE ?= 300
CHAOS_SIZE      ?= 1000

.PHONY: chaos
chaos: control-plane ## the full-size fault suite: 1,000 resources, Graph faults, operator kills, a control-plane restart
	$(CARGO) build --release --locked -p pwreset-operator -p graph-emulator --bins
	CHAOS_SIZE=$(CHAOS_SIZE) $(CARGO) test --release --locked -p pwreset-operator --test chaos -- --nocapture

BENCH_ARGS ?=

.PHONY: bench
bench: control-plane ## benchmark the release build, writes bench/report.md (BENCH_ARGS="--quick" for a short run)
	$(CARGO) build --release --locked --workspace --bins
	$(CARGO) run --release --locked -p pwreset-bench -- $(BENCH_ARGS)

.PHONY: demo
demo: control-plane ## local control plane + Graph emulator + operator + three sample resources, live
	$(CARGO) build --locked --workspace --bins
	KUBECTL=$(KUBECTL) scripts/demo.sh

.PHONY: chart-lint
chart-lint: $(HELM) ## helm lint the chart with its default and its ci/ values
	$(HELM) lint --strict charts/pwreset-operator
	@for f in charts/pwreset-operator/ci/*-values.yaml; do \
		echo "$(HELM) lint --strict charts/pwreset-operator --values $$f"; \
		$(HELM) lint --strict charts/pwreset-operator --values $$f || exit 1; \
	done

# ---------------------------------------------------------------------------------------
# Monitoring and chart docs: promtool checks and unit-tests the chart's alerts and the
# dashboard's queries; helm-docs writes the chart README from values.yaml's comments.
# Both are built from Go modules, like helm. Prometheus 3.x tags its Go module v0.3XX.Y
# (v0.316.0 is Prometheus 3.16.0).
# ---------------------------------------------------------------------------------------
PROMTOOL_VERSION  := v0.316.0
HELM_DOCS_VERSION := v1.14.2
PROMTOOL          := $(TOOLS_BIN)/promtool
HELM_DOCS         := $(TOOLS_BIN)/helm-docs

# remove_all_sd leaves out the service-discovery plugins (cloud SDKs, client-go): the
# tests only check and unit-test rules, and the build is about a third smaller.
$(PROMTOOL): | check-toolchains
	@mkdir -p $(@D)
	GOBIN=$(TOOLS_BIN) $(GO) install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

$(HELM_DOCS): | check-toolchains
	@mkdir -p $(@D)
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/norwoodj/helm-docs/cmd/helm-docs@$(HELM_DOCS_VERSION)

.PHONY: monitoring-tools
monitoring-tools: $(HELM) $(PROMTOOL) $(HELM_DOCS) ## build helm, promtool and helm-docs from Go modules

.PHONY: chart-docs
chart-docs: $(HELM_DOCS) ## regenerate charts/pwreset-operator/README.md from values.yaml and README.md.gotmpl
	$(HELM_DOCS) --chart-search-root charts --template-files README.md.gotmpl

.PHONY: test-monitoring
test-monitoring: monitoring-tools ## the alert, dashboard and chart README tests alone (no control plane)
	$(CARGO) test --locked --test monitoring

# `make test` builds what tests/monitoring.rs needs.
test: monitoring-tools

# ---- Image and node (issue 16) ---------------------------------------------------------
# The operator image built without a registry or a container engine, and a real node
# (containerd + kubelet + kube-proxy) for the test control plane. kubelet, kube-proxy and
# kube-scheduler are in the control plane's multi-call binary; containerd comes from its
# Go module; runc, the CNI plugins and iptables from Debian packages.

CONTAINERD_VERSION := v2.4.2
NODE_BIN           := $(TARGET)/node/bin
IMAGE_DIR          := $(TARGET)/image
IMAGE_TOOL         := $(TARGET)/tools/bin/oci-image
IMAGE_DEBS         := libc6 libgcc-s1 ca-certificates
NODE_DEBS          := runc containernetworking-plugins iptables
OPERATOR_IMAGE     := $(IMAGE_DIR)/pwreset-operator.oci.tar
EMULATOR_IMAGE     := $(IMAGE_DIR)/graph-emulator.oci.tar
PAUSE_IMAGE        := $(IMAGE_DIR)/pause.oci.tar
IMAGE_TAG          := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/pwreset-operator/Chart.yaml)

$(IMAGE_TOOL): $(wildcard tools/image/*.go) tools/image/go.mod tools/image/go.sum | check-toolchains
	@mkdir -p $(@D)
	cd tools/image && $(GO) build -trimpath -o $@ .

# The image's C runtime and CA certificates come from Debian packages, not the host's /lib.
$(IMAGE_DIR)/debroot/.done:
	@command -v apt-get >/dev/null || { echo "error: make image needs apt-get (Debian) to download $(IMAGE_DEBS)"; exit 1; }
	rm -rf $(IMAGE_DIR)/debs $(@D) && mkdir -p $(IMAGE_DIR)/debs $(@D)
	# A fresh machine has no package lists yet: fetch them once if the download needs them.
	cd $(IMAGE_DIR)/debs && { apt-get download $(IMAGE_DEBS) || { apt-get update -qq && apt-get download $(IMAGE_DEBS); }; }
	for d in $(IMAGE_DIR)/debs/*.deb; do dpkg-deb -x $$d $(@D); done
	touch $@

# The shared libraries the binary links, as ldd resolves them (plus the loader).
define image_libs
$$(ldd $(1) | awk '/=> \//{print "--lib " $$3} /^\t\/.*ld-linux/{print "--lib " $$1}')
endef

.PHONY: image
image: $(OPERATOR_IMAGE) $(EMULATOR_IMAGE) ## OCI archives of the operator and the Graph emulator in target/image (no registry needed)

# IMAGE_PROFILE=release for `make image`; `make test` packs the debug build it already has
# (stripped, so the layers stay small), sparing CI a second, optimised compile: what the
# image tests check (layout, user, probes, RBAC, leader election) does not depend on it.
IMAGE_PROFILE ?= release
IMAGE_BIN_DIR := $(IMAGE_DIR)/bin

$(OPERATOR_IMAGE) $(EMULATOR_IMAGE): $(IMAGE_TOOL) $(IMAGE_DIR)/debroot/.done FORCE
	$(CARGO) build $(if $(filter release,$(IMAGE_PROFILE)),--release) --locked --workspace --bin pwreset-operator --bin graph-emulator
	@mkdir -p $(IMAGE_BIN_DIR)
	strip -o $(IMAGE_BIN_DIR)/pwreset-operator target/$(IMAGE_PROFILE)/pwreset-operator
	strip -o $(IMAGE_BIN_DIR)/graph-emulator target/$(IMAGE_PROFILE)/graph-emulator
	$(IMAGE_TOOL) --out $(OPERATOR_IMAGE) --ref docker.io/library/pwreset-operator:$(IMAGE_TAG) \
		--binary $(IMAGE_BIN_DIR)/pwreset-operator --dest /pwreset-operator \
		--deb-root $(IMAGE_DIR)/debroot $(call image_libs,$(IMAGE_BIN_DIR)/pwreset-operator) --ca-certs \
		--entrypoint '["/pwreset-operator"]' --cmd '["run"]' --user 65532:65532 --expose 8080/tcp \
		--label org.opencontainers.image.title=pwreset-operator --label org.opencontainers.image.licenses=Apache-2.0
	$(IMAGE_TOOL) --out $(EMULATOR_IMAGE) --ref docker.io/library/graph-emulator:$(IMAGE_TAG) \
		--binary $(IMAGE_BIN_DIR)/graph-emulator --dest /graph-emulator \
		--deb-root $(IMAGE_DIR)/debroot $(call image_libs,$(IMAGE_BIN_DIR)/graph-emulator) --ca-certs \
		--entrypoint '["/graph-emulator"]' --cmd '["--listen","0.0.0.0:8080"]' --user 65532:65532 --expose 8080/tcp
	@ls -l $(OPERATOR_IMAGE) $(EMULATOR_IMAGE)

.PHONY: FORCE
FORCE:

# The pod sandbox image (registry.k8s.io/pause cannot be pulled here): a static Go program.
$(PAUSE_IMAGE): $(IMAGE_TOOL) tools/image/pause/main.go
	@mkdir -p $(@D)
	cd tools/image && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(IMAGE_DIR)/pause ./pause
	$(IMAGE_TOOL) --out $@ --ref localhost/pwreset/pause:1 --binary $(IMAGE_DIR)/pause --dest /pause \
		--entrypoint '["/pause"]' --user 65535:65535

$(NODE_BIN)/containerd: | check-toolchains
	@mkdir -p $(@D)
	CGO_ENABLED=0 GOBIN=$(NODE_BIN) $(GO) install -trimpath -ldflags "-s -w" -tags "no_btrfs no_devmapper no_zfs" \
		github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION) \
		github.com/containerd/containerd/v2/cmd/ctr@$(CONTAINERD_VERSION) \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION)

.PHONY: node-packages
node-packages:
	@missing=""; for p in $(NODE_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && apt-get install -y -qq $$missing; fi

.PHONY: node
node: control-plane $(NODE_BIN)/containerd $(PAUSE_IMAGE) node-packages ## containerd, kubelet, kube-proxy, runc and CNI for a real node (tests/node.rs)

# `make test` runs tests/image.rs and tests/node.rs too, so it builds what they need.
test: image node
test: IMAGE_PROFILE = debug

.PHONY: demo-node
demo-node: node image tools ## make demo, with the operator as pods from the chart on a real node
	DEMO_ON_NODE=1 $(MAKE) demo
