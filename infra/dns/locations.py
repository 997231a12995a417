"""Geolocation locations as Route 53 `GeoLocation` values and set identifiers."""

from __future__ import annotations

from typing import Any, NamedTuple

from infra.config import Config


class Location(NamedTuple):
    """A place a region serves: kind is continent, country, subdivision or
    default; code is AF, DE, US-CA or * respectively."""

    kind: str
    code: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.code}"


DEFAULT = Location("default", "*")


def region_locations(config: Config, region: str) -> list[Location]:
    """Return the region's configured locations, the default one last."""
    entry = config.region(region)
    locations = [Location(kind, code) for kind, code in entry.geolocation.locations()]
    if entry.default:
        locations.append(DEFAULT)
    return locations


def geolocation(location: Location) -> dict[str, str]:
    """Return the Route 53 `GeoLocation` value of a location."""
    if location.kind == "continent":
        return {"ContinentCode": location.code}
    if location.kind == "country":
        return {"CountryCode": location.code}
    if location.kind == "subdivision":
        country, _, subdivision = location.code.partition("-")
        return {"CountryCode": country, "SubdivisionCode": subdivision}
    if location == DEFAULT:
        return {"CountryCode": "*"}
    raise ValueError(f"unknown location kind {location.kind!r}")


def location_of(geo: dict[str, Any]) -> Location:
    """Return the location a Route 53 `GeoLocation` value stands for."""
    if "ContinentCode" in geo:
        return Location("continent", geo["ContinentCode"])
    country = geo.get("CountryCode", "")
    if country == "*":
        return DEFAULT
    if "SubdivisionCode" in geo:
        return Location("subdivision", f"{country}-{geo['SubdivisionCode']}")
    return Location("country", country)


def set_identifier(region: str, location: Location) -> str:
    """Return the SetIdentifier of a region's record for a location.

    The kind is part of it because continent and country codes overlap: NA
    is North America and Namibia, AS is Asia and American Samoa.
    """
    if location == DEFAULT:
        return f"{region}-default"
    return f"{region}-{location.kind}-{location.code}"


def owned_by(set_id: str, region: str) -> bool:
    """Return whether a SetIdentifier belongs to the region's records."""
    if set_id == f"{region}-default":
        return True
    kinds = ("continent", "country", "subdivision")
    return any(set_id.startswith(f"{region}-{kind}-") for kind in kinds)
