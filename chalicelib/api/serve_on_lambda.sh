#!/bin/bash
# The streaming function's handler: the one-machine server (server.py), started by the AWS Lambda
# Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap runs this script in place of the Python
# runtime), which forwards each Function URL request to it on AWS_LWA_PORT and streams the answer
# back as it is written (AWS_LWA_INVOKE_MODE=response_stream). One worker process, a few threads:
# Lambda sends one request at a time to an execution environment.
#
# The package's own libraries come first; the runtime's directory supplies boto3, which the
# package leaves out (see requirements.txt).
set -euo pipefail
cd "${LAMBDA_TASK_ROOT}"
export PYTHONPATH="${LAMBDA_TASK_ROOT}${PYTHONPATH:+:${PYTHONPATH}}:/opt/python:${LAMBDA_RUNTIME_DIR}"
exec python -m chalicelib.api.server --host 127.0.0.1 --port "${AWS_LWA_PORT}"
