#!/usr/bin/env bash
# Makes a private CA and certificates signed by it in DIR, for the TLS tests:
# ca.pem/ca.key, server.pem/server.key (127.0.0.1, localhost), client.pem/client.key.
set -euo pipefail
dir=${1:?usage: test-ca.sh DIR}
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 -days 2 -subj "/CN=eco2ai test CA" "${ec[@]}" -keyout ca.key -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
sign() { # name subject extensions
  openssl req -subj "$2" "${ec[@]}" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out "$1.pem" -extfile "$1.ext" 2>/dev/null
}
sign server /CN=127.0.0.1 "subjectAltName=IP:127.0.0.1,DNS:localhost
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth"
sign client /CN=prometheus "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
