# hsmkms: make run (development server), make test (the whole suite),
# make bench (throughput against a running kmsd and the raw token).
SHELL := /bin/bash
GO    ?= go
export CGO_ENABLED := 1
# Where the Go tarball installs; sudo's secure_path drops it.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: run test bench build vet staticcheck fmt clean package

# The build's identity for --version and hsmkms_build_info; link-time, so
# that it is there even where VCS stamping is off (GOFLAGS=-buildvcs=false).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/hsmkms/hsmkms/internal/buildinfo.version=$(VERSION) \
           -X github.com/hsmkms/hsmkms/internal/buildinfo.commit=$(COMMIT)
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

## build: every command under cmd/ (kmsd, kmsctl, and whatever else exists) into bin/.
build:
	@scripts/ensure-go.sh
	@mkdir -p bin
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...
	@# The Kubernetes KMS plugin is static (no cgo): it runs beside the apiserver, often in a container.
	@if [ -d cmd/kms-k8s-plugin ]; then CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/kms-k8s-plugin ./cmd/kms-k8s-plugin; fi

## run: SoftHSM token + SQLite under var/, kept between runs; KMS_LISTEN=host:port to move it.
KMS_LISTEN ?= 127.0.0.1:8080
run:
	@scripts/ensure-softhsm.sh
	@$(MAKE) --no-print-directory build
	@scripts/dev-setup.sh
	@echo "kmsd on http://$(KMS_LISTEN) (token 'hsmkms', database var/hsmkms.db)"
	@echo "development bearer token: $$(cat var/bootstrap-token)"
	@echo "in another shell: export KMS_ADDR=http://$(KMS_LISTEN) KMS_TOKEN=\$$(cat var/bootstrap-token); bin/kmsctl keys list"
	@echo "or: curl -s -H \"Authorization: Bearer $$(cat var/bootstrap-token)\" -H 'Content-Type: application/json' -X POST http://$(KMS_LISTEN)/v1/keys -d '{\"alias\":\"alias/MyAppKey\"}'"
	@SOFTHSM2_CONF=$(CURDIR)/softhsm.conf KMS_PIN_FILE=var/pin KMS_LISTEN=$(KMS_LISTEN) \
	  KMS_BOOTSTRAP_TOKEN=$$(cat var/bootstrap-token) exec flock -n var/kmsd.lock bin/kmsd

## test: installs what is missing, then every test against real SoftHSM
## tokens, SQLite and a throwaway PostgreSQL cluster (stopped at the end);
## the end-to-end suites run a second time with PostgreSQL as the store;
## then the token-dependent packages run a third time on a second,
## independent PKCS#11 implementation, NSS softoken: each test binary makes
## its own NSS database (certutil -N; no daemon), see internal/softhsmtest.
## The NSS pass runs with -race too: measured on 2 cores (2026-12-01) it
## takes 1m47s with it (40 s without) and the whole target about 5 minutes,
## well within 15; drop -race there first if the suite ever grows past that.
NSS_PACKAGES := ./hsm/ ./service/ ./api/ ./awsapi/ ./metrics/ ./cmd/kmsd/ ./cmd/kmsctl/
test:
	@scripts/ensure-go.sh
	@scripts/ensure-softhsm.sh
	@scripts/ensure-awscli.sh
	@softhsm2-util --version | sed 's/^/softhsm2 /'
	@scripts/ensure-nss.sh >/dev/null
	@scripts/ensure-acl.sh
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@dir=$$(mktemp -d) && trap 'scripts/pg-test.sh stop "'"$$dir"'"' EXIT && \
	  url=$$(scripts/pg-test.sh start "$$dir") && \
	  echo "throwaway PostgreSQL: $$url" && \
	  KMS_TEST_POSTGRES="$$url" CI=$${CI:-} $(GO) test -race -count=1 -timeout 10m ./... && \
	  echo "end-to-end suites again, on PostgreSQL:" && \
	  KMS_TEST_STORE=postgres KMS_TEST_POSTGRES="$$url" CI=$${CI:-} $(GO) test -race -count=1 -timeout 5m \
	    ./api/ ./service/ ./metrics/ ./cmd/kmsctl/ ./awsapi/ && \
	  echo "token-dependent suites again, on NSS softoken:" && \
	  KMS_PKCS11_MODULE=$$(scripts/ensure-nss.sh) KMS_HSM_PROFILE=auto KMS_PKCS11_INIT_ARGS= KMS_TOKEN_LABEL= \
	    KMS_TEST_POSTGRES="$$url" CI=$${CI:-} $(GO) test -race -count=1 -timeout 10m $(NSS_PACKAGES)

## package: the Debian package (nfpm) of kmsd, kmsctl and kms-k8s-plugin into dist/.
package:
	@scripts/ensure-go.sh
	GO=$(GO) scripts/package.sh $(or $(PKG_DIR),dist) $(VERSION)

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

fmt:
	gofmt -l -w .

clean:
	rm -rf bin

## bench: REST vs raw token throughput (docs/benchmarks.md); BENCH_DURATION=10s for longer runs.
bench:
	@scripts/bench.sh
