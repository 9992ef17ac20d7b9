package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/hsmkms/hsmkms/blob"
	"github.com/hsmkms/hsmkms/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsservice "k8s.io/kms/pkg/service"
)

// The apiserver's limits (k8s.io/kms/apis/v2): key_id and ciphertext at
// most 1 KiB. key_id, "<uuid>:v<n>", is at most 47 bytes; a DEK seed is 32
// bytes and the blob adds at most blob.MaxOverhead.
const (
	maxCiphertextLen = 1024
	maxPlaintextLen  = maxCiphertextLen - blob.MaxOverhead
)

// Annotations stored by the apiserver next to each encrypted DEK, in
// plaintext, in etcd: which hsmkms key and version encrypted it. Keys must
// be fully qualified domain names.
const (
	annotationKey     = "key.hsmkms.io"
	annotationVersion = "version.hsmkms.io"
)

// Encryption contexts bind each blob to its use: a DEK the apiserver stored
// cannot be passed off as something else, and the Status probe's blobs are
// never DEKs. They are part of the stored data's format: never change them
// (decrypting a DEK by hand: kmsctl decrypt --context purpose=kubernetes-kms-v2-dek).
var (
	dekContext   = map[string]string{"purpose": "kubernetes-kms-v2-dek"}
	probeContext = map[string]string{"purpose": "kubernetes-kms-v2-status"}
	probeText    = []byte("hsmkms kms-k8s-plugin status probe")
)

// plugin is the KMS v2 service on one hsmkms key. It keeps no key state:
// Status and Encrypt each learn the key version from the blob kmsd returns.
type plugin struct {
	key     string // id or alias/NAME, as configured
	client  func() (*client.Client, error)
	timeout func(context.Context) (context.Context, context.CancelFunc)
	log     *slog.Logger

	mu    sync.Mutex
	state health
	keyID string // the last key_id seen, for the log and an unhealthy Status
}

// health is what the last Status found; the log shows its changes.
type health int

const (
	unknown health = iota
	healthy
	unhealthy
)

var _ kmsservice.Service = (*plugin)(nil)

// Status encrypts a probe under the key: healthz is "ok" only when that
// works, and key_id is the version that encrypted it, i.e. the key's
// primary version now. A rotation between this call and the apiserver's
// next Encrypt makes that Encrypt return the newer key_id, which the
// apiserver refuses as a mismatch and retries after its next Status (10 s):
// key_id is never a guess.
//
// When the probe fails, Status still names the last key_id it saw: the
// apiserver compares key_id even when healthz is not "ok", and an unchanged
// one lets it keep writing with its current DEK through a kmsd outage.
func (p *plugin) Status(ctx context.Context) (*kmsservice.StatusResponse, error) {
	h, err := p.encrypt(ctx, probeText, probeContext)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		msg := status.Convert(err).Message()
		if p.state != unhealthy {
			p.log.Warn("unhealthy", "key", p.key, "error", msg)
		}
		p.state = unhealthy
		keyID := p.keyID
		if keyID == "" {
			keyID = "unknown"
		}
		return &kmsservice.StatusResponse{Version: "v2", Healthz: msg, KeyID: keyID}, nil
	}
	keyID := h.String()
	if p.state != healthy || keyID != p.keyID {
		p.log.Info("healthy", "key", p.key, "key_id", keyID, "previous_key_id", p.keyID)
	}
	p.state, p.keyID = healthy, keyID
	return &kmsservice.StatusResponse{Version: "v2", Healthz: "ok", KeyID: keyID}, nil
}

// Encrypt encrypts a DEK (or DEK seed) under the key's primary version and
// returns the key_id of the version that did it, read from the blob.
func (p *plugin) Encrypt(ctx context.Context, uid string, plaintext []byte) (*kmsservice.EncryptResponse, error) {
	if len(plaintext) == 0 || len(plaintext) > maxPlaintextLen {
		return nil, status.Errorf(codes.InvalidArgument, "plaintext is %d bytes; want 1 to %d (the ciphertext must stay within %d)",
			len(plaintext), maxPlaintextLen, maxCiphertextLen)
	}
	h, blobBytes, err := p.encryptBlob(ctx, plaintext, dekContext)
	if err != nil {
		p.log.Warn("encrypt failed", "uid", uid, "key", p.key, "error", status.Convert(err).Message())
		return nil, err
	}
	p.seen(h.String())
	p.log.Debug("encrypt", "uid", uid, "key_id", h.String())
	return &kmsservice.EncryptResponse{
		Ciphertext: blobBytes,
		KeyID:      h.String(),
		Annotations: map[string][]byte{
			annotationKey:     []byte(h.KeyID.String()),
			annotationVersion: []byte(strconv.Itoa(h.Version)),
		},
	}, nil
}

// Decrypt opens a blob of any version of the key (kmsd finds the version in
// the blob). The apiserver's key_id must be the one the blob names: a DEK
// record whose key_id was changed in etcd is refused before kmsd is asked.
func (p *plugin) Decrypt(ctx context.Context, uid string, req *kmsservice.DecryptRequest) ([]byte, error) {
	h, err := blob.Parse(req.Ciphertext)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "ciphertext is not an hsmkms blob")
	}
	if req.KeyID != h.String() {
		return nil, status.Errorf(codes.InvalidArgument, "key_id %.100q is not the ciphertext's key version %s", req.KeyID, h)
	}
	c, err := p.client()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	ctx, cancel := p.timeout(ctx)
	defer cancel()
	res, err := c.Decrypt(ctx, req.Ciphertext, dekContext, "")
	if err != nil {
		err = grpcError(err)
		p.log.Warn("decrypt failed", "uid", uid, "key_id", req.KeyID, "error", status.Convert(err).Message())
		return nil, err
	}
	p.log.Debug("decrypt", "uid", uid, "key_id", req.KeyID)
	return res.Plaintext, nil
}

// encrypt is encryptBlob for callers that need only the header.
func (p *plugin) encrypt(ctx context.Context, plaintext []byte, encCtx map[string]string) (blob.Header, error) {
	h, _, err := p.encryptBlob(ctx, plaintext, encCtx)
	return h, err
}

// encryptBlob asks kmsd to encrypt and checks the answer: a blob of the
// limits' size whose header agrees with kmsd's key_id and key_version.
func (p *plugin) encryptBlob(ctx context.Context, plaintext []byte, encCtx map[string]string) (blob.Header, []byte, error) {
	c, err := p.client()
	if err != nil {
		return blob.Header{}, nil, status.Error(codes.Unavailable, err.Error())
	}
	ctx, cancel := p.timeout(ctx)
	defer cancel()
	res, err := c.Encrypt(ctx, p.key, plaintext, encCtx)
	if err != nil {
		return blob.Header{}, nil, grpcError(err)
	}
	h, err := blob.Parse(res.CiphertextBlob)
	if err != nil || h.KeyID.String() != res.KeyID || h.Version != res.KeyVersion {
		return blob.Header{}, nil, status.Errorf(codes.Internal, "kmsd answered key %s version %d with a blob that does not say so", res.KeyID, res.KeyVersion)
	}
	if len(res.CiphertextBlob) > maxCiphertextLen {
		return blob.Header{}, nil, status.Errorf(codes.Internal, "ciphertext of %d bytes exceeds the apiserver's %d", len(res.CiphertextBlob), maxCiphertextLen)
	}
	return h, res.CiphertextBlob, nil
}

// seen records a key_id an Encrypt returned, so that the log shows when
// the apiserver moves to a new version.
func (p *plugin) seen(keyID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if keyID != p.keyID {
		p.log.Info("new key_id", "key", p.key, "key_id", keyID, "previous_key_id", p.keyID)
		p.keyID = keyID
	}
}

// grpcError maps kmsd's answer to a gRPC status with kmsd's message (which
// never holds secrets): the apiserver logs it and shows it in healthz.
func grpcError(err error) error {
	var e *client.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.DeadlineExceeded) {
			return status.Error(codes.DeadlineExceeded, "kmsd did not answer in time")
		}
		if errors.Is(err, context.Canceled) {
			return status.Error(codes.Canceled, "canceled")
		}
		return status.Error(codes.Unavailable, "kmsd unreachable: "+err.Error())
	}
	msg := fmt.Sprintf("kmsd: %s: %s", e.Code, e.Message)
	switch {
	case e.Status == http.StatusUnauthorized:
		return status.Error(codes.Unauthenticated, msg)
	case e.Status == http.StatusForbidden:
		return status.Error(codes.PermissionDenied, msg)
	case e.Status == http.StatusNotFound:
		return status.Error(codes.NotFound, msg)
	case e.Code == "InvalidCiphertextException" || e.Code == "ValidationException":
		return status.Error(codes.InvalidArgument, msg)
	case e.Code == "ConflictException":
		return status.Error(codes.Aborted, msg) // retryable
	case e.Status == http.StatusConflict:
		return status.Error(codes.FailedPrecondition, msg) // disabled, pending deletion
	case e.Status == http.StatusTooManyRequests:
		return status.Error(codes.ResourceExhausted, msg)
	case e.Status == http.StatusServiceUnavailable:
		return status.Error(codes.Unavailable, msg)
	}
	return status.Error(codes.Internal, msg)
}
