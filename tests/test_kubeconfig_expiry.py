"""A kubeconfig that stays valid (issue 14 item 5): the admin client certificate's notAfter
as the stack output kubeconfigExpiry (not secret), and the kubeconfig read again when the
previous run's certificate was within 30 days of expiry, never otherwise."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pulumi

from components.kubeconfig import UNKNOWN_EXPIRY, client_certificate_expiry, renewal_marker
from tests.harness import K3S_KUBECONFIG, SECRET_SIG, TEST_SSH_KEY, Run, prod_config, run_program

# Made with `openssl req -x509 -newkey ec ... -days 400` (UTCTime notAfter) and `-days 36500`
# (GeneralizedTime, after 2049); `openssl x509 -noout -enddate` printed the dates below.
UTC_TIME_CERT = """-----BEGIN CERTIFICATE-----
MIIBtDCCAVugAwIBAgIUAgYBr9Mdu73TTddj14el1jffHWwwCgYIKoZIzj0EAwIw
MDEXMBUGA1UECgwOc3lzdGVtOm1hc3RlcnMxFTATBgNVBAMMDHN5c3RlbTphZG1p
bjAeFw0yNjEyMDIwMjA3NTZaFw0yODAxMDYwMjA3NTZaMDAxFzAVBgNVBAoMDnN5
c3RlbTptYXN0ZXJzMRUwEwYDVQQDDAxzeXN0ZW06YWRtaW4wWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAARR0FHjR27uRM/dftdNMb2GfTC+FZyqAUEKxMuFqMnFMgFm
k+Q4Kkm2YHk/Udf3ztz47M5tRXtLwip1i+WHfq1fo1MwUTAdBgNVHQ4EFgQU9Q60
P/mds9hVEnfT0a8bLnLuSMMwHwYDVR0jBBgwFoAU9Q60P/mds9hVEnfT0a8bLnLu
SMMwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBkkoI1yqdMWmeY
iDewA8yMu/laYDZ/y3pBqPmPZ5HRhwIgCTM3l2xRbwRstOx5lWSRj2GL+VUMinhc
sxgs16hrD3s=
-----END CERTIFICATE-----
"""
UTC_TIME_NOT_AFTER = "2028-01-06T02:07:56Z"
GENERALIZED_TIME_CERT = """-----BEGIN CERTIFICATE-----
MIIBdDCCARugAwIBAgIUbDDY28Ur9Z+UN7RRfc6Hy2YRn2owCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEbG9uZzAgFw0yNjEyMDIwMjA3NTZaGA8yMTI2MTEwODAyMDc1
NlowDzENMAsGA1UEAwwEbG9uZzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABO4Z
MHy7ra4lMts2l8Zw4wl2iqBJw2hWT5ZjD41+9Y31Io2xTYnUhQ18GGFirLQQpfbR
kTgko5U8ShIUKGOvYsKjUzBRMB0GA1UdDgQWBBThDZB9xrGrIqHWj9a0rT8lwJXv
2TAfBgNVHSMEGDAWgBThDZB9xrGrIqHWj9a0rT8lwJXv2TAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0cAMEQCID+GpEORLtutRgoeFQlQlPnIqMSId4TSeAQc
grfW4lWvAiBDw6mTLaz0CmVGGmZYMgzUVb/rdOLx4auiSJmurRLpBw==
-----END CERTIFICATE-----
"""
GENERALIZED_TIME_NOT_AFTER = "2126-11-08T02:07:56Z"
SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": "a-fixed-token"}


def kubeconfig_with(cert: str) -> str:
    data = base64.b64encode(cert.encode()).decode()
    return K3S_KUBECONFIG.replace("Q0xJRU5ULUNFUlQ=", data)


def today() -> date:
    return datetime.now(UTC).date()


def stamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def run(previous: dict[str, Any] | None = None, cert: str = UTC_TIME_CERT) -> Run:
    def stdout(args: pulumi.runtime.MockResourceArgs) -> str | None:
        return kubeconfig_with(cert) if args.name.endswith("-kubeconfig") else None

    return run_program(prod_config(), SECRETS, stack="prod", stdout_for=stdout, previous_outputs=previous)


def read_text(r: Run) -> str:
    text: str = r.by_name("prod-kubeconfig").plain()["create"]
    return text


def test_the_expiry_is_the_client_certificates_not_after_in_both_asn1_time_forms() -> None:
    assert client_certificate_expiry(kubeconfig_with(UTC_TIME_CERT)) == UTC_TIME_NOT_AFTER
    assert client_certificate_expiry(kubeconfig_with(GENERALIZED_TIME_CERT)) == GENERALIZED_TIME_NOT_AFTER


def test_a_kubeconfig_without_a_readable_certificate_has_an_unknown_expiry() -> None:
    assert client_certificate_expiry(K3S_KUBECONFIG) == UNKNOWN_EXPIRY  # not a certificate
    token_user = "users:\n- name: x\n  user:\n    token: abc\n"
    assert client_certificate_expiry(token_user) == UNKNOWN_EXPIRY
    assert client_certificate_expiry("not: [yaml") == UNKNOWN_EXPIRY


def test_the_stack_exports_the_expiry_in_plain_text() -> None:
    r = run()
    assert r.outputs["kubeconfigExpiry"] == UTC_TIME_NOT_AFTER
    assert r.outputs["kubeconfigRenewal"] == ""
    assert SECRET_SIG in str(r.outputs["kubeconfig"])  # the kubeconfig itself stays secret


def test_the_renewal_marker_changes_only_within_30_days_of_expiry() -> None:
    day = date(2027, 6, 1)
    assert renewal_marker(stamp(day + timedelta(days=31)), "", day) == ""
    assert renewal_marker(stamp(day + timedelta(days=31)), "2026-06-01", day) == "2026-06-01"
    assert renewal_marker(stamp(day + timedelta(days=30)), "2026-06-01", day) == "2027-06-01"
    assert renewal_marker(stamp(day - timedelta(days=3)), "", day) == "2027-06-01"  # already expired
    assert renewal_marker(UNKNOWN_EXPIRY, "x", day) == "x"
    assert renewal_marker(None, None, day) == ""


def test_far_from_expiry_an_up_changes_nothing() -> None:
    first = run()
    far = run({"kubeconfigExpiry": stamp(today() + timedelta(days=200)), "kubeconfigRenewal": ""})
    assert read_text(far) == read_text(first)


def test_within_30_days_the_kubeconfig_is_read_again_once_per_day() -> None:
    first = run()
    near = run({"kubeconfigExpiry": stamp(today() + timedelta(days=20)), "kubeconfigRenewal": ""})
    assert read_text(near) != read_text(first)
    assert near.outputs["kubeconfigRenewal"] == today().isoformat()
    # The read's new text: a replacement (the read has no update), so its stdout is read again.
    again = run({"kubeconfigExpiry": stamp(today() + timedelta(days=20)), "kubeconfigRenewal": today().isoformat()})
    assert read_text(again) == read_text(near)  # the same day: nothing more


def test_after_a_renewal_the_next_up_is_a_no_op_again() -> None:
    near = run({"kubeconfigExpiry": stamp(today() + timedelta(days=20)), "kubeconfigRenewal": ""})
    renewed = {"kubeconfigExpiry": stamp(today() + timedelta(days=365)), "kubeconfigRenewal": today().isoformat()}
    after = run(renewed)
    assert read_text(after) == read_text(near)
    assert after.outputs["kubeconfigRenewal"] == today().isoformat()
