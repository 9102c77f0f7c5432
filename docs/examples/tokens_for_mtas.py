"""Tokens for MTAs that own their SMTP verbs (Postfix, Exim behind ``saslkit serve dovecot-auth``).

Postfix and Exim cannot carry saslkit's REMEMBERME or STOKEN SMTP commands, but they relay any SASL
mechanism the auth service lists.  So a client obtains its token elsewhere, here with IMAP ``REMEMBERME``
from ``saslkit serve imap`` sharing the same database (an administrator can also run ``saslkit token
mint``), and then logs in through the MTA with the token mechanisms (REMEMBERME, HT-*-NONE, HT2-*-NONE):

    printf '%s\\n' "$PASSWORD" | python docs/examples/tokens_for_mtas.py \\
        --imap 127.0.0.1:1143 --imap-cafile saslkit-tls.crt --smtp 127.0.0.1:587 --smtp-cafile postfix.crt \\
        --user alice

It prints one line per mechanism and exits 0 when every login through the MTA succeeded.
(tests/test_postfix.py runs it against a real Postfix.)
"""

from __future__ import annotations

import argparse
import ssl
import sys

from saslkit.errors import SaslError
from saslkit.imap.client import ImapClient
from saslkit.net.client import ClientError
from saslkit.smtp.client import SmtpClient

MECHANISMS = ("REMEMBERME", "HT2-SHA-256-NONE")


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def token_over_imap(address: str, cafile: str | None, user: str, password: str) -> str:
    """Log in with SCRAM-SHA-256 and ask for a RANDOM reauthentication token (``REMEMBERME RANDOM``)."""
    host, port = host_port(address)
    with ImapClient(host, port, ssl_context=ssl.create_default_context(cafile=cafile)) as imap:
        imap.connect("starttls")
        imap.authenticate("SCRAM-SHA-256", user, password)
        token = imap.remember("RANDOM")
        imap.logout()
    return token


def login_through_mta(address: str, cafile: str | None, user: str, mechanism: str, token: str) -> str:
    """One SMTP AUTH with ``mechanism`` and the token, through the MTA; its final reply."""
    host, port = host_port(address)
    with SmtpClient(host, port, ssl_context=ssl.create_default_context(cafile=cafile)) as smtp:
        smtp.connect("starttls")
        result = smtp.authenticate(mechanism, user, token)
        smtp.quit()
    return str(result.reply)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imap", required=True, metavar="HOST:PORT", help="saslkit serve imap")
    parser.add_argument("--imap-cafile", help="its certificate (default: system CAs)")
    parser.add_argument("--smtp", required=True, metavar="HOST:PORT", help="Postfix or Exim submission")
    parser.add_argument("--smtp-cafile", help="its certificate (default: system CAs)")
    parser.add_argument("--user", required=True)
    args = parser.parse_args(argv)
    password = sys.stdin.readline().rstrip("\n")
    try:
        token = token_over_imap(args.imap, args.imap_cafile, args.user, password)
        for mechanism in MECHANISMS:
            print(f"{mechanism}: {login_through_mta(args.smtp, args.smtp_cafile, args.user, mechanism, token)}")
    except (ClientError, SaslError, OSError) as exc:
        print(f"tokens_for_mtas: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
