"""Prints a wrk Lua script for one SigV4-signed AWS KMS JSON request (botocore's signer).

usage: kms_sign.py ENDPOINT ACCESS_KEY SECRET KEY_ID GenerateDataKey|Decrypt [BLOB_B64]
SigV4 signatures stay valid for 15 minutes, so wrk can replay the request to measure
server throughput without a client's signing cost.
"""
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
endpoint, ak, sk, key, op = sys.argv[1:6]
if op == "GenerateDataKey":
    body = json.dumps({"KeyId": key, "KeySpec": "AES_256"})
else:
    body = json.dumps({"CiphertextBlob": sys.argv[6]})
req = AWSRequest(method="POST", url=endpoint + "/", data=body,
                 headers={"X-Amz-Target": "TrentService." + op, "Content-Type": "application/x-amz-json-1.1"})
SigV4Auth(Credentials(ak, sk), "kms", "us-east-1").add_auth(req)
hdrs = dict(req.headers.items())
lua = 'wrk.method = "POST"\nwrk.body = %s\n' % json.dumps(body)
for k, v in hdrs.items():
    lua += 'wrk.headers[%s] = %s\n' % (json.dumps(k), json.dumps(v))
print(lua)
