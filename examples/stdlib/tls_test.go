package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir and
// returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wshub test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With -tls-cert and -tls-key the example serves HTTPS and wss://, and
// says so in its listening line.
func TestExample_ServesTLS(t *testing.T) {
	bin := buildExample(t)
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	e := startExample(t, bin, "-addr", "127.0.0.1:0", "-store", "mem", "-tls-cert", certFile, "-tls-key", keyFile)
	require.Equal(t, "https", e.scheme)
	tlsConf := &tls.Config{RootCAs: pool}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	resp, err := hc.Get("https://" + e.addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	d := websocket.Dialer{TLSClientConfig: tlsConf}
	dial := func(user string) *websocket.Conn {
		ws, _, err := d.Dial("wss://"+e.addr+"/ws?token="+user, nil)
		require.NoError(t, err)
		t.Cleanup(func() { ws.Close() })
		var f wshub.Frame
		require.NoError(t, ws.ReadJSON(&f))
		require.Equal(t, wshub.CmdWelcome, f.Cmd)
		return ws
	}
	alice, bob := dial("alice"), dial("bob")
	require.NoError(t, alice.WriteJSON(&wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "over tls"}))
	var m wshub.Frame
	require.NoError(t, bob.ReadJSON(&m))
	assert.Equal(t, "over tls", m.Content)

	// A browser page served over HTTPS sends an https Origin: same origin.
	h := http.Header{"Origin": {"https://" + e.addr}}
	ws, _, err := d.Dial("wss://"+e.addr+"/ws?token=carol", h)
	require.NoError(t, err)
	ws.Close()
}

func TestExample_TLSFlagsGoTogether(t *testing.T) {
	out, err := exec.Command(buildExample(t), "-tls-cert", "x.pem").CombinedOutput()
	require.Error(t, err, "the example must refuse a certificate without a key")
	assert.Contains(t, string(out), "-tls-cert and -tls-key go together")
}
