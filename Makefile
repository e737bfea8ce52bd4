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
build: ## build the operator and the Graph emulator (release)
	$(CARGO) build --release --bins

.PHONY: crds
crds: ## regenerate crds/ and the chart's copy from the Rust types
	$(CARGO) run --quiet --bin pwreset-operator -- crd > crds/passwordresetoperations.pwreset.dev.yaml
	cp crds/passwordresetoperations.pwreset.dev.yaml charts/pwreset-operator/crds/

.PHONY: lint
lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

.PHONY: test
test: control-plane tools lint ## everything: lint, unit tests, e2e tests against a real control plane
	$(CARGO) test --locked --all-targets --no-fail-fast

.PHONY: chaos
chaos: control-plane ## the full-size fault suite: 1,000 resources, Graph faults, operator kills, a control-plane restart
	CHAOS_SIZE=$${CHAOS_SIZE:-1000} $(CARGO) test --release --locked --test chaos -- --nocapture

BENCH_ARGS ?=

.PHONY: bench
bench: control-plane ## benchmark the release build, writes bench/report.md (BENCH_ARGS="--quick" for a short run)
	$(CARGO) build --release --bins
	$(CARGO) run --release --example bench -- $(BENCH_ARGS)

.PHONY: demo
demo: control-plane ## local control plane + Graph emulator + operator + three sample resources, live
	$(CARGO) build --bins
	KUBECTL=$(KUBECTL) scripts/demo.sh

.PHONY: chart-lint
chart-lint: $(HELM) ## helm lint the chart with its default and its ci/ values
	$(HELM) lint --strict charts/pwreset-operator
	@for f in charts/pwreset-operator/ci/*-values.yaml; do \
		echo "$(HELM) lint --strict charts/pwreset-operator --values $$f"; \
		$(HELM) lint --strict charts/pwreset-operator --values $$f || exit 1; \
	done

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
	cd $(IMAGE_DIR)/debs && apt-get download $(IMAGE_DEBS)
	for d in $(IMAGE_DIR)/debs/*.deb; do dpkg-deb -x $$d $(@D); done
	touch $@

# The shared libraries the binary links, as ldd resolves them (plus the loader).
define image_libs
$$(ldd $(1) | awk '/=> \//{print "--lib " $$3} /^\t\/.*ld-linux/{print "--lib " $$1}')
endef

.PHONY: image
image: $(OPERATOR_IMAGE) $(EMULATOR_IMAGE) ## OCI archives of the operator and the Graph emulator in target/image (no registry needed)

$(OPERATOR_IMAGE) $(EMULATOR_IMAGE): $(IMAGE_TOOL) $(IMAGE_DIR)/debroot/.done FORCE
	$(CARGO) build --release --locked --bin pwreset-operator --bin graph-emulator
	$(IMAGE_TOOL) --out $(OPERATOR_IMAGE) --ref docker.io/library/pwreset-operator:$(IMAGE_TAG) \
		--binary target/release/pwreset-operator --dest /pwreset-operator \
		--deb-root $(IMAGE_DIR)/debroot $(call image_libs,target/release/pwreset-operator) --ca-certs \
		--entrypoint '["/pwreset-operator"]' --cmd '["run"]' --user 65532:65532 --expose 8080/tcp \
		--label org.opencontainers.image.title=pwreset-operator --label org.opencontainers.image.licenses=Apache-2.0
	$(IMAGE_TOOL) --out $(EMULATOR_IMAGE) --ref docker.io/library/graph-emulator:$(IMAGE_TAG) \
		--binary target/release/graph-emulator --dest /graph-emulator \
		--deb-root $(IMAGE_DIR)/debroot $(call image_libs,target/release/graph-emulator) --ca-certs \
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

.PHONY: demo-node
demo-node: node image tools ## make demo, with the operator as pods from the chart on a real node
	DEMO_ON_NODE=1 $(MAKE) demo
