#!/usr/bin/env python3
"""moto with IAM enforcement, for the least-privilege tests (crates/kmdr-testkit/src/s3.rs).

`moto-iam.py server -H HOST -p PORT` runs moto's server (`python3 -m moto.server`)
with one fix: moto recomputes a request's SigV4 signature from the query string as
its web framework decoded it, so any query value with an encoded character (a list
`prefix=repo%2Fdata%2F`, as every S3 client sends it) fails with
SignatureDoesNotMatch, boto3's own requests included. The fix encodes the values
again, as SigV4's canonical request does, before moto computes the signature;
everything else (the access key naming the IAM user, the user's policies deciding
each action) is moto's own.

`moto-iam.py users` reads {"endpoint": URL, "users": {"NAME": "POLICY JSON", ...}}
on stdin, creates each user with that inline policy and an access key, turns
authentication on (POST /moto-api/reset-auth with body 0: from then on every request
must be signed by a key IAM knows, and is allowed only what its policy allows), and
prints {"NAME": ["ACCESS KEY ID", "SECRET"], ...}.
"""
import json
import sys
import urllib.request
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def server(argv):
    from moto.iam import access_control
    from moto.server import main

    create = access_control.IAMRequestBase._create_aws_request

    def canonical_query(self):
        request = create(self)
        parts = urlsplit(request.url)
        if parts.query:
            pairs = (p.partition("=") for p in parts.query.split("&"))
            query = "&".join(
                quote(unquote(k), safe="-_.~") + "=" + quote(unquote(v), safe="-_.~") for k, _, v in pairs
            )
            request.url = urlunsplit(parts._replace(query=query))
        return request

    access_control.IAMRequestBase._create_aws_request = canonical_query
    main(argv)


def users():
    import boto3

    cfg = json.load(sys.stdin)
    iam = boto3.client(
        "iam",
        endpoint_url=cfg["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    keys = {}
    for name, policy in cfg["users"].items():
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"kmdr-{name}", PolicyDocument=policy)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        keys[name] = [key["AccessKeyId"], key["SecretAccessKey"]]
    # Not form-encoded: moto reads the raw body, which a form content type empties.
    request = urllib.request.Request(
        cfg["endpoint"] + "/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request).read()
    json.dump(keys, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        server(sys.argv[2:])
    elif sys.argv[1:2] == ["users"]:
        users()
    else:
        sys.exit("usage: moto-iam.py server [moto.server args] | moto-iam.py users < spec.json")
