"""Country -> world region, from the UN M49 standard (facts, not text: no names here).

Source: United Nations Statistics Division, "Standard country or area codes for statistical use
(M49)", https://unstats.un.org/unsd/methodology/m49/ ; each country's region is the M49 region
(the top level below World) that contains it. Babel's copy of the Unicode CLDR has no territory
containment, so the membership is written here; the names of the regions and countries come from
CLDR through babel (probe_cldr.py).

Countries only: the 193 UN member states and the Holy See, by ISO 3166-1 alpha-2 code. Territories
and areas of M49 are left out. TRANSCONTINENTAL marks the countries whose region is commonly given
otherwise than M49 gives it (a country across two continents, or counted in another one), so a
question about their region has no one answer: the probe asks about none of them.
"""

from __future__ import annotations

# M49 region code -> the countries in it (ISO 3166-1 alpha-2).
M49_REGIONS: dict[str, str] = {
    "002": (  # Africa
        "DZ AO BJ BW BF BI CV CM CF TD KM CG CD CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR LY MG MW ML MR "
        "MU MA MZ NA NE NG RW ST SN SC SL SO ZA SS SD TZ TG TN UG ZM ZW"
    ),
    "019": (  # Americas
        "AG AR BS BB BZ BO BR CA CL CO CR CU DM DO EC SV GD GT GY HT HN JM MX NI PA PY PE KN LC VC SR TT US UY VE"
    ),
    "142": (  # Asia
        "AF AM AZ BH BD BT BN KH CN CY GE IN ID IR IQ IL JP JO KZ KW KG LA LB MY MV MN MM NP KP OM PK PH QA KR "
        "SA SG LK SY TJ TH TL TR TM AE UZ VN YE"
    ),
    "150": (  # Europe
        "AL AD AT BY BE BA BG HR CZ DK EE FI FR DE GR HU IS IE IT LV LI LT LU MT MD MC ME NL MK NO PL PT RO RU "
        "SM RS SK SI ES SE CH UA GB VA"
    ),
    "009": "AU FJ KI MH FM NR NZ PW PG WS SB TO TV VU",  # Oceania
}

REGION_OF: dict[str, str] = {country: region for region, codes in M49_REGIONS.items() for country in codes.split()}
REGIONS: tuple[str, ...] = tuple(M49_REGIONS)

# Russia, Türkiye, Kazakhstan, Egypt: land on two continents; Armenia, Azerbaijan, Georgia, Cyprus:
# M49 Asia, often counted in Europe; Timor-Leste: M49 Asia, often counted in Oceania.
TRANSCONTINENTAL = frozenset({"RU", "TR", "KZ", "EG", "AM", "AZ", "GE", "CY", "TL"})

assert len(REGION_OF) == 194 == sum(len(codes.split()) for codes in M49_REGIONS.values()), "a country twice"
