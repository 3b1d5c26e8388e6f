"""Rapport's generated Python bindings, exercised as an app would use them.

Run by `cargo test -p rapport-ffi --test bindings`, which generates the bindings, puts
them on PYTHONPATH and sets RAPPORT_RELAY to the workspace's `rapport-relay` binary.
"""

import asyncio
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import rapport
from rapport import (
    ChangeListener,
    InviteRole,
    RapportError,
    RapportHome,
    SyncStatusListener,
    Direction,
    EntityKind,
    ExportFormat,
    ImportOptions,
    LedgerBy,
    Need,
    NewPartner,
    NewReferral,
    NewTouchpoint,
    Origin,
    PartnerEdit,
    PartnerFilter,
    PartnerKind,
    StreamKind,
    SyncStatus,
    TouchpointKind,
    TouchpointOutcome,
)


class Recorder(ChangeListener):
    """Collects change events from any thread."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def on_change(self, event):
        with self.lock:
            self.events.append(event)


class StatusRecorder(SyncStatusListener):
    def __init__(self):
        self.statuses = []

    def on_status(self, status):
        self.statuses.append(status)


def practice(directory):
    home = RapportHome.open(directory)
    home.create_practice("Riverside Counseling", "Ana Ruiz")
    return home


class PracticeTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.home = practice(self.dir.name)

    def tearDown(self):
        self.home.close_home()
        del self.home
        self.dir.cleanup()

    def test_partners_touchpoints_referrals_and_insights(self):
        home = self.home
        identity = home.identity()
        self.assertEqual(identity.practice_name, "Riverside Counseling")
        stream = home.create_stream("Pediatricians", StreamKind.MEDICAL)
        doctor = home.add_partner(
            NewPartner(
                kind=PartnerKind.PHYSICIAN,
                name="Dr. Maya Chen",
                city="Portland",
                specialties=["anxiety", "adhd"],
                stream_id=stream.id,
            )
        )
        school = home.add_partner(
            NewPartner(kind=PartnerKind.SCHOOL, name="Lincoln High", specialties=["anxiety"])
        )
        self.assertEqual(home.partner(doctor.id).name, "Dr. Maya Chen")
        self.assertEqual(home.partner_count(), 2)
        edited = home.edit_partner(doctor.id, PartnerEdit(phone="+1 503 555 0100"))
        self.assertEqual(edited.phone, "+1 503 555 0100")
        # Coded values as a person types them, read by the core.
        typed = home.edit_partner(
            school.id, PartnerEdit(languages=["Spanish"], specialties=["PTSD", "anx"])
        )
        self.assertEqual(typed.languages, ["es"])
        self.assertEqual(sorted(typed.specialties), ["anxiety", "trauma_ptsd"])
        self.assertEqual([p.name for p in home.search_partners("Maya", 10)], ["Dr. Maya Chen"])
        schools = home.partners(PartnerFilter(kind=PartnerKind.SCHOOL))
        self.assertEqual([p.id for p in schools], [school.id])

        touch = home.log_touchpoint(
            NewTouchpoint(
                partner_id=doctor.id,
                kind=TouchpointKind.COFFEE,
                at="2026-11-02",
                outcome=TouchpointOutcome.REACHED,
                note="Talked about our teen anxiety group",
            )
        )
        self.assertEqual(touch.at, "2026-11-02")
        self.assertEqual(len(home.touchpoints_of(doctor.id)), 1)
        for day in ["2026-10-01", "2026-10-20", "2026-11-10"]:
            home.record_referral(
                NewReferral(
                    partner_id=doctor.id, direction=Direction.IN, at=day, concerns=["anxiety"]
                )
            )
        home.record_referral(
            NewReferral(partner_id=school.id, direction=Direction.OUT, at="2026-11-12", concerns=["adhd"])
        )
        self.assertEqual(len(home.referrals_of(doctor.id)), 3)

        ledger = home.reciprocity(LedgerBy.PARTNER, "2026-11-27", 90)
        row = next(r for r in ledger if r.id == doctor.id)
        self.assertEqual((row.window.received, row.window.sent), (3, 0))
        gaps = home.reciprocity_gaps("2026-11-27", 90)
        self.assertIn(doctor.id, [r.id for r in gaps.they_send_we_never_send])
        report = home.stream_report("2026-11-27")
        self.assertEqual([w.days for w in report], [90, 365])
        self.assertEqual(report[0].total, 3)
        digest = home.weekly_digest("2026-11-27")
        self.assertIsInstance(digest.overdue_count, int)
        trends = home.trends("2026-11-27", 3)
        self.assertGreaterEqual(len(trends.by_stream), 1)

        self.assertEqual(home.stream_window("2026-11-27", 90).total, 3)
        self.assertIn("adhd", rapport.vocabulary().concerns)

        matches = home.match_need(Need(concerns=["adhd"]))
        self.assertTrue(matches, "a partner treating ADHD should match")
        self.assertEqual(matches[0].id, doctor.id)
        self.assertTrue(matches[0].reasons)

    def test_a_listener_hears_changes_until_its_handle_is_cancelled(self):
        recorder = Recorder()
        handle = self.home.subscribe(recorder)
        partner = self.home.add_partner(NewPartner(kind=PartnerKind.THERAPIST, name="Sam Okafor"))
        self.assertEqual(len(recorder.events), 1)
        event = recorder.events[0]
        self.assertEqual(event.origin, Origin.LOCAL)
        self.assertIn(partner.id, [e.id for e in event.entities if e.kind == EntityKind.PARTNER])
        self.assertTrue(handle.is_active())
        handle.cancel()
        self.assertFalse(handle.is_active())
        self.home.add_partner(NewPartner(kind=PartnerKind.THERAPIST, name="Jo Park"))
        self.assertEqual(len(recorder.events), 1, "a cancelled listener heard a change")
        del handle

    def test_bad_input_is_a_typed_error_with_a_useful_message(self):
        with self.assertRaises(RapportError.Invalid) as caught:
            self.home.add_partner(
                NewPartner(kind=PartnerKind.THERAPIST, name="Ana", email="not-an-email")
            )
        self.assertIn("email", str(caught.exception))
        with self.assertRaises(RapportError.Invalid) as caught:
            self.home.record_referral(
                NewReferral(partner_id="nope", direction=Direction.IN, concerns=["anxiety"])
            )
        self.assertIn("partner_id", str(caught.exception))
        partner = self.home.add_partner(NewPartner(kind=PartnerKind.THERAPIST, name="Lee"))
        with self.assertRaises(RapportError.ClientIdentifier) as caught:
            self.home.log_touchpoint(
                NewTouchpoint(
                    partner_id=partner.id,
                    kind=TouchpointKind.CALL,
                    note="Referred client John Smith born 04/12/1990",
                )
            )
        self.assertIn("client identifiers never go into Rapport", str(caught.exception))
        with self.assertRaises(RapportError.Invalid) as caught:
            self.home.complete_followup("whatever", "2026-02-30")
        self.assertIn("YYYY-MM-DD", str(caught.exception))
        # Nothing of the refused writes was stored.
        self.assertEqual(self.home.partner_count(), 1)
        self.assertEqual(self.home.touchpoints_of(partner.id), [])

    def test_import_and_export(self):
        tracker = "Name,Type,Referred,Date,Concerns\nDr. Ortiz,physician,in,2026-10-02,anxiety\n"
        report = self.home.import_csv(tracker, ImportOptions())
        self.assertTrue(report.written)
        self.assertEqual((report.partners_created, report.referrals), (1, 1))
        bad = self.home.import_csv("Name,Date,Referred\nX,2026-13-01,in\n", ImportOptions())
        self.assertFalse(bad.written)
        self.assertEqual(bad.errors[0].line, 2)
        csv = bytes(self.home.export(ExportFormat.CSV)).decode()
        self.assertIn("Dr. Ortiz", csv)
        document = self.home.export(ExportFormat.AUTOMERGE)
        self.assertGreater(len(document), 100)

    def test_a_closed_home_refuses_calls(self):
        self.home.close_home()
        with self.assertRaises(RapportError.Closed):
            self.home.partner_count()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SyncTest(unittest.TestCase):
    """Two homes syncing through a real rapport-relay on loopback."""

    def setUp(self):
        relay = os.environ["RAPPORT_RELAY"]
        self.relay_dir = tempfile.TemporaryDirectory()
        addr = f"127.0.0.1:{free_port()}"
        init = subprocess.run(
            [relay, "init", "--data", self.relay_dir.name, "--public-addr", addr],
            check=True,
            capture_output=True,
            text=True,
        )
        self.setup_code = next(
            line for line in init.stdout.splitlines() if line.startswith("RAPPORT-SETUP-")
        )
        self.relay = subprocess.Popen(
            [relay, "serve", "--data", self.relay_dir.name, "--listen", addr],
            stderr=subprocess.DEVNULL,
        )
        self.dirs = [tempfile.TemporaryDirectory() for _ in range(2)]

    def tearDown(self):
        self.relay.terminate()
        self.relay.wait(timeout=30)
        for d in self.dirs + [self.relay_dir]:
            d.cleanup()

    def test_two_homes_converge(self):
        asyncio.run(self.converge())

    async def converge(self):
        ana = practice(self.dirs[0].name)
        ana.add_partner(NewPartner(kind=PartnerKind.PHYSICIAN, name="Shared Partner"))
        for attempt in range(50):  # the relay may take a moment to listen
            try:
                report = await ana.connect_relay(self.setup_code)
                break
            except (RapportError.Network, RapportError.Sync):
                await asyncio.sleep(0.2)
        else:
            self.fail("could not connect to the relay")
        self.assertGreater(report.pushed, 0)
        invite = await ana.create_invite(InviteRole.MEMBER, 3600)

        ben = RapportHome.open(self.dirs[1].name)
        identity = await ben.join(invite, "Ben Adler")
        self.assertEqual(identity.practice_name, "Riverside Counseling")
        self.assertEqual([p.name for p in ben.partners(PartnerFilter())], ["Shared Partner"])
        ben.add_partner(NewPartner(kind=PartnerKind.SCHOOL, name="From Ben"))
        await ben.sync_now()

        heard = Recorder()
        listening = ana.subscribe(heard)
        statuses = StatusRecorder()
        sync = ana.start_sync(statuses)
        self.assertTrue(sync.is_running())
        with self.assertRaises(RapportError.Conflict):
            ana.start_sync(StatusRecorder())
        deadline = time.monotonic() + 30
        names = []
        while time.monotonic() < deadline:
            names = sorted(p.name for p in ana.partners(PartnerFilter()))
            if names == ["From Ben", "Shared Partner"]:
                break
            await asyncio.sleep(0.1)
        self.assertEqual(names, ["From Ben", "Shared Partner"])
        self.assertTrue(any(e.origin == Origin.REMOTE for e in heard.events))
        while time.monotonic() < deadline and not any(
            isinstance(s, SyncStatus.UP_TO_DATE) for s in statuses.statuses
        ):
            await asyncio.sleep(0.1)
        self.assertTrue(any(isinstance(s, SyncStatus.UP_TO_DATE) for s in statuses.statuses))
        self.assertIsInstance(ana.sync_status(), SyncStatus.UP_TO_DATE)

        known = await ana.devices()
        self.assertEqual(len(known.devices), 2)
        self.assertEqual(sum(d.this_device for d in known.devices), 1)
        self.assertEqual(known.invites, [], "the invite was used")

        await sync.stop()
        self.assertFalse(sync.is_running())
        listening.cancel()
        for home in (ana, ben):
            home.close_home()
        del sync, listening, ana, ben


if __name__ == "__main__":
    unittest.main(verbosity=2)
