package app.rapport

import app.rapport.core.ChangeEvent
import app.rapport.core.Direction
import app.rapport.core.EntityKind
import app.rapport.core.ExportFormat
import app.rapport.core.ImportOptions
import app.rapport.core.LedgerBy
import app.rapport.core.Need
import app.rapport.core.NewPartner
import app.rapport.core.NewReferral
import app.rapport.core.NewTouchpoint
import app.rapport.core.Origin
import app.rapport.core.PartnerEdit
import app.rapport.core.PartnerFilter
import app.rapport.core.PartnerKind
import app.rapport.core.RapportException
import app.rapport.core.StreamKind
import app.rapport.core.SyncStatus
import app.rapport.core.TouchpointKind
import app.rapport.core.TouchpointOutcome
import java.net.DatagramSocket
import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir

/** Collects change events; Rapport calls it on the thread that made the change. */
class Recorder : ChangeListener {
    val events = CopyOnWriteArrayList<ChangeEvent>()
    override fun onChange(event: ChangeEvent) {
        events.add(event)
    }
}

class StatusRecorder : SyncStatusListener {
    val statuses = CopyOnWriteArrayList<SyncStatus>()
    override fun onStatus(status: SyncStatus) {
        statuses.add(status)
    }
}

fun practice(dir: Path): RapportHome =
    RapportHome.open(dir.toString()).also { it.createPractice("Riverside Counseling", "Ana Ruiz") }

class PracticeTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun partnersTouchpointsReferralsAndInsights() = practice(dir).use { home ->
        assertEquals("Riverside Counseling", home.identity()!!.practiceName)
        val stream = home.createStream("Pediatricians", StreamKind.MEDICAL)
        val doctor = home.addPartner(
            NewPartner(
                kind = PartnerKind.PHYSICIAN,
                name = "Dr. Maya Chen",
                city = "Portland",
                specialties = listOf("anxiety", "adhd"),
                streamId = stream.id,
            ),
        )
        val school = home.addPartner(NewPartner(kind = PartnerKind.SCHOOL, name = "Lincoln High"))
        assertEquals("Dr. Maya Chen", home.partner(doctor.id).name)
        assertEquals(2uL, home.partnerCount())
        assertEquals("+1 503 555 0100", home.editPartner(doctor.id, PartnerEdit(phone = "+1 503 555 0100")).phone)
        // Coded values as a person types them, read by the core.
        val typed = home.editPartner(school.id, PartnerEdit(languages = listOf("Spanish"), specialties = listOf("PTSD", "anx")))
        assertEquals(listOf("es"), typed.languages)
        assertEquals(listOf("anxiety", "trauma_ptsd"), typed.specialties.sorted())
        assertEquals(listOf("Dr. Maya Chen"), home.searchPartners("Maya", 10u).map { it.name })
        assertEquals(listOf(school.id), home.partners(PartnerFilter(kind = PartnerKind.SCHOOL)).map { it.id })

        val touch = home.logTouchpoint(
            NewTouchpoint(
                partnerId = doctor.id,
                kind = TouchpointKind.COFFEE,
                at = "2026-11-02",
                outcome = TouchpointOutcome.REACHED,
                note = "Talked about our teen anxiety group",
            ),
        )
        assertEquals("2026-11-02", touch.at)
        for (day in listOf("2026-10-01", "2026-10-20", "2026-11-10")) {
            home.recordReferral(NewReferral(partnerId = doctor.id, direction = Direction.IN, at = day, concerns = listOf("anxiety")))
        }
        home.recordReferral(NewReferral(partnerId = school.id, direction = Direction.OUT, at = "2026-11-12", concerns = listOf("adhd")))
        assertEquals(3, home.referralsOf(doctor.id).size)

        val row = home.reciprocity(LedgerBy.PARTNER, "2026-11-27", 90u).single { it.id == doctor.id }
        assertEquals(3u, row.window.received)
        assertEquals(0u, row.window.sent)
        assertTrue(home.reciprocityGaps("2026-11-27", 90u).theySendWeNeverSend.any { it.id == doctor.id })
        val streams = home.streamReport("2026-11-27")
        assertEquals(listOf(90u, 365u), streams.map { it.days })
        assertEquals(3u, streams[0].total)
        assertTrue(home.trends("2026-11-27", 3u).byStream.isNotEmpty())
        home.weeklyDigest("2026-11-27")

        assertEquals(3u, home.streamWindow("2026-11-27", 90u).total)
        assertTrue(vocabulary().concerns.contains("adhd"))

        val matches = home.matchNeed(Need(concerns = listOf("adhd")))
        assertEquals(doctor.id, matches.first().id)
        assertTrue(matches.first().reasons.isNotEmpty())
    }

    @Test
    fun aListenerHearsChangesUntilItsHandleIsClosed() = practice(dir).use { home ->
        val recorder = Recorder()
        val handle = home.subscribe(recorder)
        val partner = home.addPartner(NewPartner(kind = PartnerKind.THERAPIST, name = "Sam Okafor"))
        assertEquals(1, recorder.events.size)
        val event = recorder.events[0]
        assertEquals(Origin.LOCAL, event.origin)
        assertTrue(event.entities.any { it.kind == EntityKind.PARTNER && it.id == partner.id })
        assertTrue(handle.isActive())
        handle.close()
        home.addPartner(NewPartner(kind = PartnerKind.THERAPIST, name = "Jo Park"))
        assertEquals(1, recorder.events.size, "a closed handle still delivered a change")
    }

    @Test
    fun badInputIsATypedExceptionWithAUsefulMessage() = practice(dir).use { home ->
        val bad = assertThrows<RapportException.Invalid> {
            home.addPartner(NewPartner(kind = PartnerKind.THERAPIST, name = "Ana", email = "not-an-email"))
        }
        assertTrue(bad.message!!.contains("email"), bad.message)
        val partner = home.addPartner(NewPartner(kind = PartnerKind.THERAPIST, name = "Lee"))
        val identifier = assertThrows<RapportException.ClientIdentifier> {
            home.logTouchpoint(
                NewTouchpoint(partnerId = partner.id, kind = TouchpointKind.CALL, note = "Referred client John Smith born 04/12/1990"),
            )
        }
        assertTrue(identifier.message!!.contains("client identifiers never go into Rapport"), identifier.message)
        val day = assertThrows<RapportException.Invalid> { home.snoozeFollowup("whatever", "2026-02-30") }
        assertTrue(day.message!!.contains("YYYY-MM-DD"), day.message)
        assertEquals(1uL, home.partnerCount())
        assertTrue(home.touchpointsOf(partner.id).isEmpty())
    }

    @Test
    fun importAndExport() = practice(dir).use { home ->
        val report = home.importCsv("Name,Type,Referred,Date,Concerns\nDr. Ortiz,physician,in,2026-10-02,anxiety\n", ImportOptions())
        assertTrue(report.written)
        assertEquals(1uL, report.referrals)
        val csv = String(home.export(ExportFormat.CSV))
        assertTrue(csv.contains("Dr. Ortiz"))
    }

    @Test
    fun aClosedHomeRefusesCalls() {
        val home = practice(dir)
        home.closeHome()
        assertThrows<RapportException.Closed> { home.partnerCount() }
        home.close()
    }
}

class SyncTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun twoHomesSyncThroughARealRelay() {
        val relayBin = System.getProperty("rapport.relay")
        val relayDir = Files.createDirectories(dir.resolve("relay"))
        val port = DatagramSocket(0).use { it.localPort }
        val addr = "127.0.0.1:$port"
        val init = ProcessBuilder(relayBin, "init", "--data", relayDir.toString(), "--public-addr", addr)
            .redirectErrorStream(true).start()
        val setup = init.inputStream.bufferedReader().readLines().first { it.startsWith("RAPPORT-SETUP-") }
        assertEquals(0, init.waitFor())
        val relay = ProcessBuilder(relayBin, "serve", "--data", relayDir.toString(), "--listen", addr)
            .redirectError(ProcessBuilder.Redirect.DISCARD).start()
        try {
            runBlocking { converge(setup) }
        } finally {
            relay.destroy()
            relay.waitFor(30, TimeUnit.SECONDS)
        }
    }

    private suspend fun converge(setup: String) = withTimeout(60_000) {
        val ana = practice(dir.resolve("ana"))
        val ben = RapportHome.open(dir.resolve("ben").toString())
        ana.addPartner(NewPartner(kind = PartnerKind.PHYSICIAN, name = "Shared Partner"))
        // The relay may take a moment to listen.
        var pushed = 0uL
        for (attempt in 0 until 50) {
            try {
                pushed = ana.connectRelay(setup).pushed
                break
            } catch (e: RapportException.Network) {
                delay(200)
            }
        }
        assertTrue(pushed > 0uL, "could not connect to the relay")
        // Async calls work from any thread: this one from a plain IO thread.
        val invite = withContext(Dispatchers.IO) { ana.createInvite(InviteRole.MEMBER, 3600uL) }
        assertEquals("Riverside Counseling", ben.join(invite, "Ben Adler").practiceName)
        assertEquals(listOf("Shared Partner"), ben.partners(PartnerFilter()).map { it.name })
        ben.addPartner(NewPartner(kind = PartnerKind.SCHOOL, name = "From Ben"))
        ben.syncNow()

        val heard = Recorder()
        val statuses = StatusRecorder()
        ana.subscribe(heard).use { _ ->
            ana.startSync(statuses).use { sync ->
                assertTrue(sync.isRunning())
                assertThrows<RapportException.Conflict> { ana.startSync(StatusRecorder()) }
                while (ana.partners(PartnerFilter()).size < 2) delay(100)
                assertEquals(listOf("From Ben", "Shared Partner"), ana.partners(PartnerFilter()).map { it.name }.sorted())
                assertTrue(heard.events.any { it.origin == Origin.REMOTE })
                while (statuses.statuses.none { it is SyncStatus.UpToDate }) delay(100)
                assertTrue(ana.syncStatus() is SyncStatus.UpToDate)
                val known = ana.devices()
                assertEquals(2, known.devices.size)
                assertEquals(1, known.devices.count { it.thisDevice })
                assertTrue(known.invites.isEmpty(), "the invite was used")
                sync.stop()
                assertFalse(sync.isRunning())
            }
        }
        ana.close()
        ben.close()
    }
}
