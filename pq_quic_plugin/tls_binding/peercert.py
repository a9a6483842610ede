"""A certificate as the dict ``ssl.SSLObject.getpeercert()`` returns.

asyncio stores that dict as the transport's ``peercert`` on every handshake, and applications
read ``subject``, ``subjectAltName`` and ``notAfter`` from it. Python builds it with the system
OpenSSL; here the certificate came through another OpenSSL, so it is rebuilt from
``cryptography``'s parsed certificate, with the same keys, names and formats.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID, NameOID

__all__ = ["certificate_dict"]

#: OpenSSL's long names, which Python's ``ssl`` uses for attribute types.
_LONG_NAMES = {
    NameOID.COMMON_NAME: "commonName",
    NameOID.COUNTRY_NAME: "countryName",
    NameOID.LOCALITY_NAME: "localityName",
    NameOID.STATE_OR_PROVINCE_NAME: "stateOrProvinceName",
    NameOID.STREET_ADDRESS: "streetAddress",
    NameOID.ORGANIZATION_NAME: "organizationName",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "surname",
    NameOID.GIVEN_NAME: "givenName",
    NameOID.TITLE: "title",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "domainComponent",
    NameOID.USER_ID: "userId",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionCountryName",
}


def _name(name: x509.Name) -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple(
        tuple((_LONG_NAMES.get(attr.oid, attr.oid.dotted_string), str(attr.value)) for attr in rdn)
        for rdn in name.rdns
    )


def _time(when: Any) -> str:
    """``'Jan  5 09:34:43 2018 GMT'``: OpenSSL's ASN1_TIME_print format, day padded by a space."""
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S %Y} GMT"


def _serial(number: int) -> str:
    """Upper-case hex, two digits per byte, as OpenSSL's ``i2a_ASN1_INTEGER`` prints it."""
    digits = f"{number:X}"
    return "0" + digits if len(digits) % 2 else digits


def _general_name(name: x509.GeneralName) -> tuple[str, str] | None:
    if isinstance(name, x509.DNSName):
        return ("DNS", name.value)
    if isinstance(name, x509.IPAddress):
        address = name.value
        if isinstance(address, ipaddress.IPv6Address):
            return ("IP Address", ":".join(f"{int(h, 16):X}" for h in address.exploded.split(":")))
        return ("IP Address", str(address))
    if isinstance(name, x509.RFC822Name):
        return ("email", name.value)
    if isinstance(name, x509.UniformResourceIdentifier):
        return ("URI", name.value)
    if isinstance(name, x509.DirectoryName):
        return ("DirName", str(_name(name.value)))
    return None


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def certificate_dict(cert: x509.Certificate) -> dict[str, Any]:
    """The ``getpeercert()`` dict of a verified certificate: a fresh dict (callers may change
    it) over immutable values, built once per certificate. asyncio asks for it on every
    connection, a client sees the same few servers again and again, and building it costs
    about 0.1 ms (cryptography parses the extensions each time)."""
    return dict(_certificate_dict(cert))


@functools.lru_cache(maxsize=64)  # keyed by the certificate: equal when the DER is
def _certificate_dict(cert: x509.Certificate) -> dict[str, Any]:
    result: dict[str, Any] = {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "version": cert.version.value + 1,
        "serialNumber": _serial(cert.serial_number),
        "notBefore": _time(cert.not_valid_before_utc),
        "notAfter": _time(cert.not_valid_after_utc),
    }
    san = _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if san is not None:
        names = [entry for entry in map(_general_name, san) if entry is not None]
        if names:
            result["subjectAltName"] = tuple(names)
    aia = _extension(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if aia is not None:
        for method, key in (
            (AuthorityInformationAccessOID.OCSP, "OCSP"),
            (AuthorityInformationAccessOID.CA_ISSUERS, "caIssuers"),
        ):
            uris = tuple(
                d.access_location.value
                for d in aia
                if d.access_method == method
                and isinstance(d.access_location, x509.UniformResourceIdentifier)
            )
            if uris:
                result[key] = uris
    crl = _extension(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if crl is not None:
        uris = tuple(
            n.value
            for point in crl
            for n in point.full_name or ()
            if isinstance(n, x509.UniformResourceIdentifier)
        )
        if uris:
            result["crlDistributionPoints"] = uris
    return result
