"""Named constants of the Twilio Studio API and of this connector, each with where it comes from."""

from __future__ import annotations

import re

# Twilio's public Studio host (OpenAPI spec `servers[0].url`).
DEFAULT_BASE_URL = "https://studio.twilio.com"

# List query `PageSize`: minimum 1, maximum 1000, default 50 (OpenAPI spec, list operations).
MIN_PAGE_SIZE = 1
MAX_PAGE_SIZE = 1000
API_DEFAULT_PAGE_SIZE = 50
# The connector asks for the largest page: fewer round trips for the same records.
DEFAULT_PAGE_SIZE = MAX_PAGE_SIZE

# SID patterns from the OpenAPI spec: two letters and 32 hex digits.
FLOW_SID_RE = re.compile(r"^FW[0-9a-fA-F]{32}$")
ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_SID_RE = re.compile(r"^SK[0-9a-fA-F]{32}$")

# Studio keeps execution and step data 30 days after the execution starts (Twilio docs, ../shared/API-NOTES.md).
RETENTION_DAYS = 30

# Twilio error codes (https://www.twilio.com/docs/errors/<code>).
ERROR_AUTHENTICATE = 20003  # 401: bad credentials, or credentials of another region
ERROR_NOT_FOUND = 20404  # 404: unknown resource
ERROR_INVALID_PARAMETER = 20001  # 400: a query parameter out of range
ERROR_INVALID_PAGE_TOKEN = 21481  # 400: a PageToken the API did not issue
ERROR_TOO_MANY_REQUESTS = 20429  # 429: too many concurrent requests for the account

# Retries. Twilio's SDK does not retry 429; we do, bounded, because scheduled loads run unattended.
DEFAULT_MAX_ATTEMPTS = 6  # one request and five retries
DEFAULT_BACKOFF_BASE_SECONDS = 0.5  # first retry waits up to 0.5 s, then 1, 2, 4 ... (full jitter)
DEFAULT_BACKOFF_MAX_SECONDS = 30.0  # no single wait, Retry-After included, is longer than this
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60.0  # a page of 1,000 engagements with context is a few MB

# Concurrency: Twilio limits concurrent REST requests per account (error 20429); a small bound
# keeps a load well inside that limit while hiding per-request latency.
DEFAULT_MAX_CONCURRENCY = 8
MAX_CONCURRENCY_LIMIT = 64
# Runs over many accounts (`subaccounts`): each account keeps its own limit above, and requests in
# flight for the whole run stay under this bound (the machine's connections and threads).
DEFAULT_MAX_TOTAL_CONCURRENCY = 32
MAX_TOTAL_CONCURRENCY_LIMIT = 256

# Twilio's core API host (shared/twilio-oai/twilio_api_v2010.json `servers`): the Accounts list.
DEFAULT_ACCOUNTS_BASE_URL = "https://api.twilio.com"

# How a list item without context is completed (see README "Context").
CONTEXT_MODES = ("inline", "fetch_missing", "never")
DEFAULT_CONTEXT_MODE = "fetch_missing"

# How engagements are written (README "History"): latest state, every version, or a change log.
WRITE_MODES = ("merge", "scd2", "append")
DEFAULT_WRITE_MODE = "merge"

# Which scalars of widget outputs become `__widgets__fields` rows (README "Tables"); every output is
# also kept whole as JSON. `arrays` keeps a load fast: all scalars are ~27 rows per engagement.
WIDGET_FIELDS_MODES = ("arrays", "all", "none")
DEFAULT_WIDGET_FIELDS = "arrays"
