"""The billed-units benchmark (bench/aws_units.py) sizes items by DynamoDB's documented rule: attribute names
and values in bytes, numbers by their significant digits, containers with their overhead."""

from __future__ import annotations

from bench.aws_units import item_size, value_size


def test_strings_and_binary_count_their_bytes_and_names_count_too():
    assert value_size({"S": "héllo"}) == 6
    assert value_size({"B": b"\x00\x01\x02"}) == 3
    assert item_size({"account_id": {"S": "acct_1"}, "ok": {"BOOL": True}}) == 10 + 6 + 2 + 1


def test_numbers_count_two_digits_a_byte_plus_one_whatever_their_leading_and_trailing_zeros():
    assert value_size({"N": "7"}) == 2
    assert value_size({"N": "123456"}) == 4
    assert value_size({"N": "-1234567"}) == 5
    assert value_size({"N": "1000000"}) == value_size({"N": "0.001"}) == 2


def test_maps_and_lists_add_three_bytes_and_one_per_element():
    assert value_size({"L": [{"S": "ab"}, {"N": "1"}]}) == 3 + (2 + 1) + (2 + 1)
    assert value_size({"M": {"k": {"S": "v"}}}) == 3 + 1 + 1 + 1
    assert item_size(None) == 0
