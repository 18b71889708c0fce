#!/usr/bin/env python3
"""A scripted fake Kubernetes API for kmdr's platform tests (no cluster needed).

Serves, over plain HTTP on 127.0.0.1 (a free port unless --port):

  GET /version                                     a version Info object
  GET /api/v1/namespaces/{ns}/secrets[?labelSelector=k=v,k2=v2]
                                                   a SecretList, filtered by the selector
  GET /api/v1/namespaces/{ns}/secrets/{name}       one Secret
  anything else                                    404 with a Kubernetes Status

The fixtures are built here from FIXTURE_VALUES: three revisions of the Helm
release "kmetal" in kmetal-system, stored exactly as Helm 3 stores them
(data.release = base64(gzip(release JSON)), then base64 again as every Secret
value is on the wire): v1 superseded, v2 deployed, v3 failed, so a correct
client picks v2. Plus an ordinary Secret kmetal-system/registry-creds and an
unrelated Helm release "other" in the same namespace.

Usage:
  fake-kube-api.py [--port N] [--port-file FILE]   serve; prints "PORT N" on stdout
  fake-kube-api.py --print-values                  print the v2 values overlay as JSON
  fake-kube-api.py --print-secret                  print registry-creds' data as JSON: {plain: {...}, data: {base64}}
"""

import argparse
import base64
import copy
import gzip
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAMESPACE = "kmetal-system"
RELEASE = "kmetal"

# The user-supplied values overlay of the deployed revision (what
# `helm get values kmetal -n kmetal-system` prints).
FIXTURE_VALUES = {
    "global": {"domain": "kmetal.example.com", "clusterName": "under-1"},
    "kamaji": {"enabled": True, "datastore": {"driver": "etcd", "replicas": 3}},
    "ingress": {"className": "nginx", "hosts": ["api.kmetal.example.com", "ui.kmetal.example.com"]},
    "registry": {"pullSecret": "registry-creds"},
    "replicas": 2,
    "ratio": 0.75,
    "note": "multi\nline: text # with yaml specials",
    "empty": None,
}

REGISTRY_CREDS = {
    ".dockerconfigjson": json.dumps({"auths": {"ghcr.io": {"auth": "dXNlcjpzM2NyZXQtdG9rZW4="}}}),
}


def values_of(revision):
    """The overlay of each revision: v2 is FIXTURE_VALUES, the others differ."""
    v = copy.deepcopy(FIXTURE_VALUES)
    if revision != 2:
        v["replicas"] = revision * 10
        v["revisionMarker"] = f"v{revision}"
    return v


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def release_json(name, revision, status):
    """A release object shaped like Helm 3's (helm.sh/helm/v3/pkg/release.Release)."""
    return {
        "name": name,
        "namespace": NAMESPACE,
        "version": revision,
        "info": {
            "first_deployed": "2026-01-10T09:00:00.123456789Z",
            "last_deployed": f"2026-01-1{revision}T09:30:00.5Z",
            "deleted": "",
            "description": {1: "Install complete", 2: "Upgrade complete", 3: "Upgrade failed: timed out"}.get(revision, "x"),
            "status": status,
        },
        "chart": {
            "metadata": {
                "name": name,
                "version": "1.4.2" if name == RELEASE else "0.1.0",
                "appVersion": "v1.4.2",
                "apiVersion": "v2",
                "description": "kMetal umbrella chart",
                "type": "application",
            },
            "lock": None,
            "templates": [{"name": "templates/configmap.yaml", "data": b64(b"kind: ConfigMap\n")}],
            "values": {"replicas": 1, "kamaji": {"enabled": False}},
            "schema": None,
            "files": [],
        },
        "config": values_of(revision) if name == RELEASE else {},
        "manifest": "---\n# Source: kmetal/templates/configmap.yaml\nkind: ConfigMap\n",
        "hooks": [],
    }


def helm_secret(name, revision, status):
    """The Secret Helm 3 writes for one revision, as the API returns it."""
    packed = b64(gzip.compress(json.dumps(release_json(name, revision, status)).encode()))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{revision}",
            "namespace": NAMESPACE,
            "uid": f"uid-{name}-{revision}",
            "resourceVersion": str(100 + revision),
            "creationTimestamp": "2026-01-10T09:00:00Z",
            "labels": {"owner": "helm", "name": name, "version": str(revision), "status": status, "modifiedAt": "1767000000"},
        },
        "type": "helm.sh/release.v1",
        # The API's own base64 over Helm's base64 text.
        "data": {"release": b64(packed.encode())},
    }


def fixtures():
    secrets = [
        helm_secret(RELEASE, 1, "superseded"),
        helm_secret(RELEASE, 2, "deployed"),
        helm_secret(RELEASE, 3, "failed"),
        helm_secret("other", 1, "deployed"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "registry-creds",
                "namespace": NAMESPACE,
                "uid": "uid-registry",
                "resourceVersion": "42",
                "creationTimestamp": "2026-01-09T00:00:00Z",
                "labels": {"app.kubernetes.io/part-of": "kmetal"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":\"...\"}",
                    "kmetal.io/owner": "platform-team",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "type": "kubernetes.io/dockerconfigjson",
            "data": {k: b64(v.encode()) for k, v in REGISTRY_CREDS.items()},
        },
    ]
    return secrets


def selector_matches(selector, labels):
    """Equality-based label selectors: k=v, k==v, k!=v, k (exists), comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term not in labels:
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    secrets = fixtures()

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def not_found(self, message, name="", kind=""):
        self.send_json(404, {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "NotFound",
            "details": {"name": name, "kind": kind}, "code": 404,
        })

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        if parts == ["version"]:
            return self.send_json(200, {
                "major": "1", "minor": "33", "gitVersion": "v1.33.1-fake", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64",
            })
        if len(parts) in (5, 6) and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            ns = parts[3]
            in_ns = [s for s in self.secrets if s["metadata"]["namespace"] == ns]
            if len(parts) == 6:
                for s in in_ns:
                    if s["metadata"]["name"] == parts[5]:
                        return self.send_json(200, s)
                return self.not_found(f'secrets "{parts[5]}" not found', parts[5], "secrets")
            selector = query.get("labelSelector", [""])[0]
            items = [s for s in in_ns if selector_matches(selector, s["metadata"].get("labels", {}))]
            return self.send_json(200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": "999"}, "items": items})
        return self.not_found(f"the server could not find the requested resource ({url.path})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--print-values", action="store_true")
    ap.add_argument("--print-secret", action="store_true")
    a = ap.parse_args()
    if a.print_values:
        print(json.dumps(values_of(2)))
        return
    if a.print_secret:
        print(json.dumps({"plain": REGISTRY_CREDS, "data": {k: b64(v.encode()) for k, v in REGISTRY_CREDS.items()}}))
        return
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    port = server.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.replace(a.port_file + ".tmp", a.port_file)
    print(f"PORT {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
