"""Members leave or are removed (their history stays), roles are read from orders' own table on
every request (a demoted coordinator cannot promote themselves back), and one person keeps one
user id across groups."""

from __future__ import annotations

from cagette_contracts import Role

from .conftest import Group, OrdersEnv, Unchanged, make_group, outbox_rows


async def test_a_demoted_coordinator_loses_the_role_at_once_and_cannot_take_it_back(group: Group) -> None:
    second_id, _ = await group.join(Role.COORDINATOR)
    token_of_second = group.member(second_id, Role.COORDINATOR)  # still says coordinator after the demotion
    demoted = await group.client.patch(
        group.url(f"/members/{second_id}"), json={"role": "member"}, headers=group.coordinator
    )
    assert demoted.status_code == 200
    async with Unchanged(group.env, group.group_id):
        back = await group.client.patch(
            group.url(f"/members/{second_id}"), json={"role": "coordinator"}, headers=token_of_second
        )
        assert back.status_code == 403 and "coordinator" in back.json()["detail"]
        listing = await group.client.get(group.url("/members"), headers=token_of_second)
        assert listing.status_code == 403


async def test_members_leave_or_are_removed_and_their_history_stays(group: Group) -> None:
    leaver_id, leaver = await group.join()
    removed_id, removed = await group.join()
    assert (await group.client.delete(group.url(f"/members/{leaver_id}"), headers=leaver)).status_code == 204
    assert (
        await group.client.delete(group.url(f"/members/{removed_id}"), headers=group.coordinator)
    ).status_code == 204
    left = [e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.member.left"]
    assert {(e["member_id"], e["removed"]) for e in left} == {(str(leaver_id), False), (str(removed_id), True)}
    listing = (await group.client.get(group.url("/members"), headers=group.coordinator)).json()
    assert {m["member_id"] for m in listing} == {str(group.coordinator_id)}
    async with Unchanged(group.env, group.group_id):
        # Their token still names the group, but they hold no role in it any more.
        assert (await group.client.get(group.url(), headers=removed)).status_code == 403
        assert (
            await group.client.delete(group.url(f"/members/{removed_id}"), headers=group.coordinator)
        ).status_code == 404
        # The last coordinator cannot leave.
        last = await group.client.delete(group.url(f"/members/{group.coordinator_id}"), headers=group.coordinator)
        assert last.status_code == 409 and "at least one coordinator" in last.json()["detail"]
    # Coming back is allowed, with the same id.
    back = await group.client.post(
        group.url("/members"),
        headers=group.coordinator,
        json={"member_id": str(removed_id), "name": "Back", "email": f"{removed_id.hex[:8]}@example.org"},
    )
    assert back.status_code == 201, back.text
    assert (await group.client.get(group.url(), headers=removed)).status_code == 200


async def test_one_person_keeps_one_user_id_across_groups(env: OrdersEnv, group: Group) -> None:
    person_id, _ = await group.join(email="same.person@example.org")
    other = await make_group(env)
    added = await other.client.post(
        other.url("/members"), headers=other.coordinator, json={"name": "Same", "email": "Same.Person@example.org"}
    )
    assert added.status_code == 201, added.text
    assert added.json()["member_id"] == str(person_id)
