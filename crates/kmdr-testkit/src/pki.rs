//! Test certificates, made with the openssl command line.

use std::path::Path;
use std::process::Command;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl command line in `dir`: ca.crt, server.{crt,key}, client.{crt,key}.
pub fn make_pki(dir: &Path) {
    let script = r#"
set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=kmdr-test-ca 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
  openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $who.crt -days 2 -extfile $who.ext 2>/dev/null
done
"#;
    let st = Command::new("bash").arg("-c").arg(script).current_dir(dir).status().expect("run openssl");
    assert!(st.success(), "openssl could not make the test certificates");
}
