#!/usr/bin/env python3
"""A scripted, fixture-driven fake Kubernetes API for kmdr's tests (no cluster needed).

It stores objects in memory, keyed by (group, version, plural, namespace, name),
and answers the REST paths kube-rs and kubectl use, over plain HTTP on
127.0.0.1 (a free port unless --port). It prints "PORT N" on stdout once it
listens.

API paths (core group under /api/v1, others under /apis/GROUP/VERSION):

  GET    /version                                   a version Info object
  GET    .../PLURAL                                 LIST across all namespaces
  GET    .../namespaces/NS/PLURAL                   LIST in one namespace
         ?labelSelector=k=v,k!=v,k,!k               equality / existence selectors
         ?fieldSelector=metadata.name=N             (metadata.name, metadata.namespace)
  GET    .../[namespaces/NS/]PLURAL/NAME            one object (404 Status if absent)
  POST   .../[namespaces/NS/]PLURAL                 create (409 AlreadyExists)
  PUT    .../[namespaces/NS/]PLURAL/NAME[/status]   replace (409 on a stale resourceVersion)
  PATCH  .../[namespaces/NS/]PLURAL/NAME[/status]   by Content-Type:
           application/apply-patch+yaml   server-side apply (?fieldManager=M&force=true);
                                          JSON bodies (what kube-rs sends) are YAML too.
                                          Creates the object when absent; otherwise the
                                          applied fields are merged in (maps recursively,
                                          lists replaced); status is ignored unless the
                                          path ends in /status.
           application/merge-patch+json   RFC 7386 (null deletes)
           application/strategic-merge-patch+json   treated as a merge patch
           application/json-patch+json    RFC 6902 add/replace/remove/test
  DELETE .../[namespaces/NS/]PLURAL/NAME            delete; returns the object

Writes behave like a real API server: the server sets metadata.uid,
resourceVersion (one global counter), creationTimestamp, generation (bumped
when spec changes) and managedFields (one entry per manager); a namespaced
write into a Namespace that does not exist is refused (404), as a real API
server does. The main resource ignores status; /status writes only status.

Test endpoints (not Kubernetes, never in the request log):

  GET    /_fake/requests     the request log: [{seq, method, path, query,
                             contentType, body}] in arrival order (body parsed
                             as JSON when it is, else text)
  GET    /_fake/objects      every stored object

Fixtures (--fixtures FILE, repeatable), JSON:

  {
    "objects":  [ {apiVersion, kind, metadata: {name, namespace?, ...}, ...}, ... ],
    "resources": [ {"apiVersion": "apps.kio.kasten.io/v1alpha1", "kind": "RestorePoint",
                    "plural": "restorepoints", "namespaced": true}, ... ],
    "rules": [
      {"kind": "TenantControlPlane",          # required; apiVersion optional
       "on": "apply",                          # create | apply | update | write
       "match": {"metadata.namespace": "t1"},  # optional: dotted path -> value
       "afterMs": 500,                         # delay (default 0)
       "set": {"status.kubernetesResources.version.status": "Ready"}}
    ],
    "version": {"gitVersion": "v1.33.1-fake"}
  }

  * objects keep any uid / resourceVersion / creationTimestamp they carry and
    get server values for the missing ones; the Namespace of every namespaced
    object is created when absent.
  * resources declare plural and scope for kinds the built-in table lacks
    (it knows core kinds, Helm, Kamaji, Cluster API, CSI snapshots,
    Kasten); otherwise the plural is the lower-cased kind + "s".
  * rules script the controllers: when a matching write ("on": create = POST
    or apply that creates; update = PUT/PATCH of an existing object; apply =
    any server-side apply; write = any of them), the "set" paths are
    written afterMs later (a normal write: resourceVersion bumps; a path
    starting with "status." is a status write). Values that are strings of
    the form "$(dotted.path)" are replaced by that field of the object
    (e.g. "$(metadata.uid)"); inside a longer string the field is spliced in
    as text ("snapcontent-$(metadata.uid)"). A rule may also "create" a list
    of objects (templates expanded the same way against the object after
    "set"), as a controller makes dependent objects; they fire "create" rules.

By default the built-in Helm fixtures below are loaded too (--bare skips
them): three revisions of the Helm release "kmetal" in kmetal-system, stored
exactly as Helm 3 stores them (data.release = base64(gzip(release JSON)), then
base64 again as every Secret value is on the wire): v1 superseded, v2
deployed, v3 failed, so a correct client picks v2. Plus an ordinary Secret
kmetal-system/registry-creds and an unrelated Helm release "other".

Usage:
  fake-kube-api.py [--port N] [--port-file FILE] [--fixtures FILE ...] [--bare]
"""

import argparse
import base64
import copy
import datetime
import gzip
import json
import os
import sys
import threading
import urllib.parse
import uuid
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

# (apiVersion, kind) -> (plural, namespaced). Fixtures may add more.
BUILTIN_RESOURCES = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Service"): ("services", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "PersistentVolume"): ("persistentvolumes", False),
    ("v1", "Node"): ("nodes", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("kamaji.clastix.io/v1alpha1", "TenantControlPlane"): ("tenantcontrolplanes", True),
    ("kamaji.clastix.io/v1alpha1", "DataStore"): ("datastores", False),
    ("controlplane.cluster.x-k8s.io/v1alpha1", "KamajiControlPlane"): ("kamajicontrolplanes", True),
    ("cluster.x-k8s.io/v1beta1", "Cluster"): ("clusters", True),
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshot"): ("volumesnapshots", True),
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotContent"): ("volumesnapshotcontents", False),
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"): ("volumesnapshotclasses", False),
    ("config.kio.kasten.io/v1alpha1", "Policy"): ("policies", True),
    ("actions.kio.kasten.io/v1alpha1", "BackupAction"): ("backupactions", True),
    ("actions.kio.kasten.io/v1alpha1", "RestoreAction"): ("restoreactions", True),
    ("actions.kio.kasten.io/v1alpha1", "RunAction"): ("runactions", True),
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


def builtin_fixtures():
    return [
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


# ---------------------------------------------------------------- helpers


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_path(obj, dotted):
    cur = obj
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def set_path(obj, dotted, value):
    parts = dotted.split(".")
    cur = obj
    for part in parts[:-1]:
        if not isinstance(cur.get(part), dict):
            cur[part] = {}
        cur = cur[part]
    cur[parts[-1]] = value


def expand(value, obj):
    """"$(dotted.path)" strings become that field of obj, recursively; inside
    a longer string ("snapcontent-$(metadata.uid)") the field is spliced in as text."""
    if isinstance(value, str) and value.startswith("$(") and value.endswith(")") and value.count("$(") == 1:
        return copy.deepcopy(get_path(obj, value[2:-1]))
    if isinstance(value, str) and "$(" in value:
        out, rest = "", value
        while "$(" in rest and ")" in rest.split("$(", 1)[1]:
            head, tail = rest.split("$(", 1)
            path, rest = tail.split(")", 1)
            field = get_path(obj, path)
            out += head + ("" if field is None else str(field))
        return out + rest
    if isinstance(value, dict):
        return {k: expand(v, obj) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, obj) for v in value]
    return value


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def apply_merge(target, applied):
    """Server-side apply, simplified: maps merge recursively, everything else
    (lists, scalars) is replaced by the applied value; nulls are ignored."""
    if not isinstance(applied, dict) or not isinstance(target, dict):
        return copy.deepcopy(applied)
    out = copy.deepcopy(target)
    for k, v in applied.items():
        if v is None:
            continue
        out[k] = apply_merge(out.get(k), v)
    return out


def json_patch(target, ops):
    """RFC 6902: add, replace, remove, test."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise ValueError(f"test failed at {op['path']}")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise ValueError(f"unsupported op {kind}")
    return doc


def selector_matches(selector, labels):
    """Equality-based label selectors: k=v, k==v, k!=v, k (exists), !k, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_matches(selector, obj):
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        have = get_path(obj, k)
        have = "" if have is None else str(have)
        if (have == v) == neg:
            return False
    return True


def keep_status(old, new):
    """The main resource ignores status: new keeps old's (or none)."""
    if "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    else:
        new.pop("status", None)
    return new


class ApiError(Exception):
    def __init__(self, code, reason, message, name="", kind=""):
        super().__init__(message)
        self.code, self.reason, self.message, self.name, self.kind = code, reason, message, name, kind

    def status(self):
        return {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason,
            "details": {"name": self.name, "kind": self.kind}, "code": self.code,
        }


# ---------------------------------------------------------------- the store


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.objects = {}  # (group, version, plural, ns, name) -> object
        self.resources = dict(BUILTIN_RESOURCES)
        self.rules = []
        self.rv = 1000
        self.log = []
        self.version = {
            "major": "1", "minor": "33", "gitVersion": "v1.33.1-fake", "gitCommit": "0" * 40,
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64",
        }

    # -- resource table
    def resource_of(self, api_version, kind):
        if (api_version, kind) in self.resources:
            return self.resources[(api_version, kind)]
        for (av, k), v in self.resources.items():
            if k == kind and av.split("/")[0] == api_version.split("/")[0]:
                return v
        return (kind.lower() + "s", True)

    def kind_of(self, group, version, plural):
        av = f"{group}/{version}" if group else version
        for (a, k), (p, _) in self.resources.items():
            if a == av and p == plural:
                return k
        for (a, k), (p, _) in self.resources.items():
            if p == plural and a.split("/")[0] == (group or a.split("/")[0]):
                return k
        for key, o in self.objects.items():
            if key[:3] == (group, version, plural):
                return o["kind"]
        return plural[:-1].capitalize() if plural.endswith("s") else plural.capitalize()

    @staticmethod
    def gv(api_version):
        return tuple(api_version.split("/", 1)) if "/" in api_version else ("", api_version)

    def key_of(self, obj):
        group, version = self.gv(obj["apiVersion"])
        plural, namespaced = self.resource_of(obj["apiVersion"], obj["kind"])
        ns = obj["metadata"].get("namespace", "") if namespaced else ""
        return (group, version, plural, ns, obj["metadata"]["name"])

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    # -- loading
    def load(self, doc):
        with self.lock:
            if isinstance(doc, list):
                doc = {"objects": doc}
            elif "kind" in doc and "apiVersion" in doc:
                doc = {"objects": [doc]}
            for r in doc.get("resources", []):
                self.resources[(r["apiVersion"], r["kind"])] = (r["plural"], r.get("namespaced", True))
            if "version" in doc:
                self.version.update(doc["version"])
            self.rules.extend(doc.get("rules", []))
            for obj in doc.get("objects", []):
                obj = copy.deepcopy(obj)
                self.objects[self.place(obj)] = obj

    def place(self, obj):
        """Server values for the metadata a fixture leaves out; its key (its
        Namespace is created when absent)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("resourceVersion", self.next_rv())
        meta.setdefault("creationTimestamp", now())
        meta.setdefault("generation", 1)
        key = self.key_of(obj)
        if key[3]:
            self.ensure_namespace(key[3])
        return key

    def ensure_namespace(self, ns):
        key = ("", "v1", "namespaces", "", ns)
        if key not in self.objects:
            self.objects[key] = {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": str(uuid.uuid4()), "resourceVersion": self.next_rv(), "creationTimestamp": now()},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
            }

    # -- rules
    def rule_matches(self, rule, obj):
        if rule.get("kind") and rule["kind"] != obj.get("kind"):
            return False
        if rule.get("apiVersion") and rule["apiVersion"] != obj.get("apiVersion"):
            return False
        for path, want in rule.get("match", {}).items():
            if get_path(obj, path) != want:
                return False
        return True

    def fire(self, events, key, obj):
        """Schedule the rules whose "on" is one of events (a write of some
        kind also matches "write")."""
        events = set(events) | {"write"}
        for rule in self.rules:
            if rule.get("on", "write") in events and self.rule_matches(rule, obj):
                self.schedule(rule, key)

    def schedule(self, rule, key):
        delay = rule.get("afterMs", 0) / 1000.0

        def run():
            with self.lock:
                obj = self.objects.get(key)
                if obj is None:
                    return
                obj = copy.deepcopy(obj)
                for path, value in rule.get("set", {}).items():
                    set_path(obj, path, expand(value, obj))
                obj["metadata"]["resourceVersion"] = self.next_rv()
                self.objects[key] = obj
                # Objects the controller makes (a VolumeSnapshotContent for a
                # VolumeSnapshot, a RestorePoint for a K10 RunAction).
                for template in rule.get("create", []):
                    new = expand(copy.deepcopy(template), obj)
                    new_key = self.place(new)
                    if new_key not in self.objects:
                        self.objects[new_key] = new
                        self.fire(["create"], new_key, new)

        t = threading.Timer(delay, run)
        t.daemon = True
        t.start()

    # -- API operations
    def check_namespace(self, ns):
        if ns and ("", "v1", "namespaces", "", ns) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', ns, "namespaces")

    def stamp_new(self, obj, manager, operation):
        meta = obj.setdefault("metadata", {})
        for f in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "deletionTimestamp"):
            meta.pop(f, None)
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self.next_rv()
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        meta["managedFields"] = [{"manager": manager or "unknown", "operation": operation, "apiVersion": obj["apiVersion"], "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}}]

    def stamp_update(self, old, new, manager, operation):
        meta = new.setdefault("metadata", {})
        om = old["metadata"]
        for f in ("uid", "creationTimestamp"):
            meta[f] = om[f]
        gen = om.get("generation", 1)
        if old.get("spec") != new.get("spec"):
            gen += 1
        meta["generation"] = gen
        meta["resourceVersion"] = self.next_rv()
        fields = [m for m in om.get("managedFields", []) if m.get("manager") != manager]
        fields.append({"manager": manager or "unknown", "operation": operation, "apiVersion": new["apiVersion"], "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}})
        meta["managedFields"] = fields

    def get(self, key):
        with self.lock:
            obj = self.objects.get(key)
            if obj is None:
                raise ApiError(404, "NotFound", f'{key[2]}.{key[0] or "core"} "{key[4]}" not found'.replace(".core", ""), key[4], key[2])
            return copy.deepcopy(obj)

    def list(self, group, version, plural, ns, label_selector, field_selector):
        with self.lock:
            items = []
            for key, obj in sorted(self.objects.items()):
                if key[:3] != (group, version, plural):
                    continue
                if ns is not None and key[3] != ns:
                    continue
                if label_selector and not selector_matches(label_selector, obj["metadata"].get("labels") or {}):
                    continue
                if field_selector and not field_selector_matches(field_selector, obj):
                    continue
                items.append(copy.deepcopy(obj))
            kind = self.kind_of(group, version, plural)
            return {
                "kind": f"{kind}List", "apiVersion": f"{group}/{version}" if group else version,
                "metadata": {"resourceVersion": str(self.rv)}, "items": items,
            }

    def create(self, key, body, manager):
        with self.lock:
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f'{key[2]} "{key[4]}" already exists', key[4], key[2])
            self.check_namespace(key[3])
            obj = copy.deepcopy(body)
            obj.get("metadata", {}).pop("resourceVersion", None)
            if key[3]:
                obj["metadata"]["namespace"] = key[3]
            self.stamp_new(obj, manager, "Update")
            self.objects[key] = obj
            self.fire(["create"], key, obj)
            return copy.deepcopy(obj)

    def replace(self, key, body, manager, status_only):
        with self.lock:
            old = self.objects.get(key)
            if old is None:
                raise ApiError(404, "NotFound", f'{key[2]} "{key[4]}" not found', key[4], key[2])
            rv = body.get("metadata", {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {key[2]} "{key[4]}": the object has been modified; please apply your changes to the latest version and try again', key[4], key[2])
            if status_only:
                new = copy.deepcopy(old)
                new["status"] = copy.deepcopy(body.get("status"))
            else:
                new = keep_status(old, copy.deepcopy(body))
            self.stamp_update(old, new, manager, "Update")
            self.objects[key] = new
            self.fire(["update"], key, new)
            return copy.deepcopy(new)

    def patch(self, key, content_type, body, manager, force, status_only):
        with self.lock:
            old = self.objects.get(key)
            if content_type.startswith("application/apply-patch"):
                if not manager:
                    raise ApiError(400, "BadRequest", "PATCH /apply requires fieldManager")
                applied = copy.deepcopy(body)
                meta = applied.get("metadata", {})
                if meta.get("name") and meta["name"] != key[4]:
                    raise ApiError(400, "BadRequest", f'the name of the object ({meta["name"]}) does not match the name on the URL ({key[4]})')
                for f in ("resourceVersion", "uid", "managedFields", "creationTimestamp", "generation"):
                    meta.pop(f, None)
                if old is None:
                    if status_only:
                        raise ApiError(404, "NotFound", f'{key[2]} "{key[4]}" not found', key[4], key[2])
                    self.check_namespace(key[3])
                    new = applied
                    new.setdefault("metadata", {})["name"] = key[4]
                    if key[3]:
                        new["metadata"]["namespace"] = key[3]
                    new.pop("status", None)
                    self.stamp_new(new, manager, "Apply")
                    self.objects[key] = new
                    self.fire(["create", "apply"], key, new)
                    return copy.deepcopy(new), 201
                if status_only:
                    new = copy.deepcopy(old)
                    new["status"] = apply_merge(old.get("status") or {}, applied.get("status") or {})
                else:
                    applied.pop("status", None)
                    new = apply_merge(old, applied)
                event = "apply"
            else:
                if old is None:
                    raise ApiError(404, "NotFound", f'{key[2]} "{key[4]}" not found', key[4], key[2])
                if content_type.startswith("application/json-patch"):
                    try:
                        new = json_patch(old, body)
                    except (ValueError, KeyError, IndexError) as e:
                        raise ApiError(422, "Invalid", f"json patch: {e}")
                elif content_type.startswith(("application/merge-patch", "application/strategic-merge-patch")):
                    new = merge_patch(old, body)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})")
                if status_only:
                    st = new.get("status")
                    new = copy.deepcopy(old)
                    new["status"] = st
                else:
                    new = keep_status(old, new)
                event = "update"
            self.stamp_update(old, new, manager, "Apply" if event == "apply" else "Update")
            self.objects[key] = new
            self.fire(["update", "apply"] if event == "apply" else ["update"], key, new)
            return copy.deepcopy(new), 200

    def delete(self, key):
        with self.lock:
            obj = self.objects.pop(key, None)
            if obj is None:
                raise ApiError(404, "NotFound", f'{key[2]} "{key[4]}" not found', key[4], key[2])
            return obj


STORE = Store()


def parse_api_path(parts):
    """-> (group, version, ns or None, plural, name or None, subresource or None)."""
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    else:
        ns = None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3:
        return None
    return group, version, ns, plural, name, sub


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        raw = self.read_body()
        if parts[:1] == ["_fake"]:
            return self.fake_endpoint(method, parts[1:], raw)
        content_type = self.headers.get("Content-Type", "")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with STORE.lock:
            STORE.log.append({
                "seq": len(STORE.log) + 1, "method": method, "path": url.path, "query": query,
                "contentType": content_type, "body": body,
            })
        try:
            code, obj = self.api(method, parts, query, content_type, body, raw)
        except ApiError as e:
            code, obj = e.code, e.status()
        self.send_json(code, obj)

    def api(self, method, parts, query, content_type, body, raw):
        if parts == ["version"] and method == "GET":
            return 200, STORE.version
        parsed = parse_api_path(parts)
        if parsed is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({'/' + '/'.join(parts)})")
        group, version, ns, plural, name, sub = parsed
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", f"subresource {sub} is not served by this fake")
        if plural == "namespaces" and ns is None and group == "":
            key_ns = ""
        else:
            key_ns = ns or ""
        manager = query.get("fieldManager", "")
        if method == "GET" and name is None:
            return 200, STORE.list(group, version, plural, ns, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        if method == "GET":
            obj = STORE.get((group, version, plural, key_ns, name))
            return 200, obj
        if method == "POST" and name is None:
            if not isinstance(body, dict) or "metadata" not in body:
                raise ApiError(400, "BadRequest", "the body is not an object")
            new_name = body["metadata"].get("name")
            if not new_name:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            return 201, STORE.create((group, version, plural, key_ns, new_name), body, manager)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
        key = (group, version, plural, key_ns, name)
        if method == "PUT":
            return 200, STORE.replace(key, body, manager, sub == "status")
        if method == "PATCH":
            if content_type.startswith("application/apply-patch") and not isinstance(body, dict):
                try:
                    import yaml  # only when a real YAML body arrives (kubectl)
                    body = yaml.safe_load(raw)
                except Exception as e:  # noqa: BLE001
                    raise ApiError(400, "BadRequest", f"cannot parse the apply body: {e}")
            force = query.get("force", "false") == "true"
            obj, code = STORE.patch(key, content_type, body, manager, force, sub == "status")
            return code, obj
        if method == "DELETE":
            return 200, STORE.delete(key)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed")

    def fake_endpoint(self, method, parts, raw):
        if parts == ["requests"] and method == "GET":
            with STORE.lock:
                return self.send_json(200, STORE.log)
        if parts == ["objects"] and method == "GET":
            with STORE.lock:
                return self.send_json(200, [copy.deepcopy(o) for _, o in sorted(STORE.objects.items())])
        return self.send_json(404, {"error": "unknown fake endpoint"})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--fixtures", action="append", default=[], help="a fixtures JSON file (repeatable)")
    ap.add_argument("--bare", action="store_true", help="do not load the built-in Helm fixtures")
    a = ap.parse_args()
    if not a.bare:
        STORE.load({"objects": builtin_fixtures()})
    for path in a.fixtures:
        with open(path) as f:
            STORE.load(json.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(a.port_file + ".tmp", a.port_file)
    print(f"PORT {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
