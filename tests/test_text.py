from introspeech.text import (
    ARPABET,
    BLANK,
    CATEGORY,
    LETTERS,
    N_SYMBOLS,
    VOWEL_CLASS,
    decode,
    encode,
    fine_category,
    normalize_text,
    pronounce,
)


def test_alphabet_has_29_symbols_with_blank_last():
    assert N_SYMBOLS == 29 and BLANK == 28 and len(LETTERS) == 28
    assert LETTERS[:26] == tuple("abcdefghijklmnopqrstuvwxyz") and LETTERS[26:] == (" ", "'")


def test_normalization_maps_to_alphabet_and_reports_drops():
    n = normalize_text("Café — “Don’t” stop: 2 cats!  ")
    assert n.text == "cafe don't stop two cats"
    assert "\u2014" in n.dropped  # the dash was not in the alphabet
    assert normalize_text("'quoted' words").text == "quoted words"
    assert normalize_text("").text == ""
    assert set(normalize_text("Ünïcödé §±").text) <= set(LETTERS)


def test_encode_decode_round_trip_and_rejects_unnormalized():
    s = "it's a test"
    assert decode(encode(s)) == s
    try:
        encode("Bad!")
    except ValueError as e:
        assert "'B'" in str(e)
    else:
        raise AssertionError("encode accepted an unnormalized string")


def test_arpabet_has_39_phones_all_categorized():
    assert len(ARPABET) == 39 == len(set(ARPABET))
    assert set(CATEGORY) == set(ARPABET)
    assert set(CATEGORY.values()) == {"vowel", "stop", "fricative", "affricate", "nasal", "liquid", "glide"}
    assert set(VOWEL_CLASS) == {p for p, c in CATEGORY.items() if c == "vowel"}
    assert fine_category("IY") == "vowel-front" and fine_category("S") == "fricative"


def test_cmudict_pronunciation_without_stress():
    assert pronounce("speech") == ["S", "P", "IY", "CH"]
    assert pronounce("qwzx") is None
