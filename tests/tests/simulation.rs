//! A deterministic simulation of a practice: five devices and the relay's own rules and
//! store (`rapport_relay::rules` on a real SQLite file), with no sockets. The devices'
//! flows are the real ones (`round`, `remove_device_via`, `create_invite_via`,
//! `apply_delivered`) over a link whose every request waits in one queue; a scheduler
//! driven by the seed picks which request the relay serves next, so membership operations
//! race each other, and it injects faults: a device crashes (its task is dropped at that
//! point and its home reopened from disk), an answer is lost, a write reaches the relay
//! twice, and notices of new entries arrive late, out of order and twice.
//!
//! Every run must end, after the devices left settle, with identical documents and read
//! models, one verified log, one key per epoch on every device, nothing refused or
//! withheld, every partner a remaining device wrote, and removed devices holding no
//! current key. The schedule is a function of the seed alone (keys and ids are random,
//! the order of everything is not): `RAPPORT_SIM_SEED=n` replays one run,
//! `RAPPORT_SIM_SEEDS=n` sets how many run (1,000 by default).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use futures::channel::oneshot;
use futures::executor::LocalPool;
use futures::future::{AbortHandle, Abortable};
use futures::task::LocalSpawnExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use rapport_core::model::{NewPartner, PartnerEdit};
use rapport_core::sync::link::Link;
use rapport_core::sync::{self, SyncReport};
use rapport_core::vocab::PartnerKind;
use rapport_core::{Home, SpaceKind};
use rapport_relay::data::DataDir;
use rapport_relay::rules;
use rapport_relay::store::Store;
use rapport_wire::client::ClientError;
use rapport_wire::codes::{InviteCode, SetupCode};
use rapport_wire::frames::{Entry, Request, Response, Role};
use rapport_wire::{DeviceId, SpaceId};

const DEVICES: usize = 5;
/// Steps each device takes while the others take theirs.
const STEPS: usize = 8;

/// A request waiting for the relay.
struct Call {
    device: usize,
    request: Request,
    reply: oneshot::Sender<Result<Response, ClientError>>,
}

/// The one queue every device's requests wait in.
#[derive(Default)]
struct Wire {
    calls: Mutex<Vec<Call>>,
}

struct SimLink {
    device: usize,
    wire: Arc<Wire>,
}

impl Link for SimLink {
    fn request(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Response, ClientError>> + Send {
        let (reply, answer) = oneshot::channel();
        self.wire.calls.lock().unwrap().push(Call {
            device: self.device,
            request: request.clone(),
            reply,
        });
        async move {
            answer.await.unwrap_or_else(|_| {
                Err(ClientError::Closed("the simulated relay went away".into()))
            })
        }
    }
}

/// Faults the scheduler injects, as chances per served request.
#[derive(Clone, Copy)]
struct Faults {
    crash: f64,
    lose_answer: f64,
    duplicate_write: f64,
}

const NONE: Faults = Faults {
    crash: 0.0,
    lose_answer: 0.0,
    duplicate_write: 0.0,
};

/// One step of a device's script.
#[derive(Debug, Clone, Copy)]
enum Step {
    AddPartner,
    EditShared,
    Round,
    Deliver,
    Remove(usize),
    Invite,
}

struct Practice {
    relay: Arc<Store>,
    dirs: Vec<PathBuf>,
    ids: Vec<DeviceId>,
    space: SpaceId,
    shared: String,
    _keep: Vec<tempfile::TempDir>,
}

struct Sim {
    rng: RefCell<StdRng>,
    wire: Arc<Wire>,
    relay: Arc<Store>,
    ids: Vec<DeviceId>,
    /// Entries announced to each device, not handed to it yet.
    notices: RefCell<Vec<Vec<(SpaceId, Entry)>>>,
    /// Devices to crash: their task is dropped once the request in hand is settled.
    crashed: RefCell<Vec<usize>>,
    trace: RefCell<Vec<String>>,
    /// Steps that failed for a reason no fault explains.
    unexpected: RefCell<Vec<String>>,
}

impl Sim {
    fn serve(&self, device: usize, request: Request) -> Result<Response, ClientError> {
        match rules::answer(&self.relay, self.ids[device], request) {
            Ok(answer) => {
                if let Some((space, _, Some(entry))) = answer.notice {
                    for (other, queue) in self.notices.borrow_mut().iter_mut().enumerate() {
                        if other != device {
                            queue.push((space, entry.clone()));
                        }
                    }
                }
                Ok(answer.response)
            }
            Err(refusal) => {
                if matches!(
                    refusal.code,
                    rapport_wire::frames::ErrorCode::Stale
                        | rapport_wire::frames::ErrorCode::StaleEpoch
                ) {
                    self.trace.borrow_mut().push(format!(
                        "device {device}: {:?} ({})",
                        refusal.code, refusal.message
                    ));
                }
                Err(ClientError::Refused {
                    code: refusal.code,
                    message: refusal.message,
                })
            }
        }
    }

    /// Serves the queued requests one at a time, in an order the seed picks, until every
    /// task is done or waits on nothing.
    fn drive(&self, pool: &mut LocalPool, faults: Faults) {
        loop {
            pool.run_until_stalled();
            let call = {
                let mut calls = self.wire.calls.lock().unwrap();
                if calls.is_empty() {
                    return;
                }
                let pick = self.rng.borrow_mut().random_range(0..calls.len());
                calls.swap_remove(pick)
            };
            let (crash, lose, twice) = {
                let mut rng = self.rng.borrow_mut();
                (
                    rng.random_bool(faults.crash),
                    rng.random_bool(faults.lose_answer),
                    rng.random_bool(faults.duplicate_write),
                )
            };
            let write = matches!(
                call.request,
                Request::Push { .. }
                    | Request::AppendOp { .. }
                    | Request::PutSnapshot { .. }
                    | Request::Prune { .. }
            );
            let name = request_name(&call.request);
            if crash {
                // Served or not, the device dies before it hears back.
                if self.rng.borrow_mut().random_bool(0.5) {
                    let _ = self.serve(call.device, call.request);
                }
                self.trace
                    .borrow_mut()
                    .push(format!("device {} crashed at {name}", call.device));
                self.crashed.borrow_mut().push(call.device);
                drop(call.reply);
                // Before anything polls it again: the caller drops it at this point.
                return;
            }
            let mut answer = self.serve(call.device, call.request.clone());
            if write && twice {
                self.trace
                    .borrow_mut()
                    .push(format!("device {}: {name} twice", call.device));
                answer = self.serve(call.device, call.request);
            }
            if lose {
                self.trace
                    .borrow_mut()
                    .push(format!("device {}: answer to {name} lost", call.device));
                answer = Err(ClientError::Closed("the simulated answer was lost".into()));
            }
            let _ = call.reply.send(answer);
        }
    }
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Push { .. } => "Push",
        Request::Pull { .. } => "Pull",
        Request::AppendOp { .. } => "AppendOp",
        Request::GetLog { .. } => "GetLog",
        Request::PutSnapshot { .. } => "PutSnapshot",
        Request::GetSnapshot { .. } => "GetSnapshot",
        Request::Prune { .. } => "Prune",
        _ => "other",
    }
}

fn link(sim: &Sim, device: usize) -> SimLink {
    SimLink {
        device,
        wire: sim.wire.clone(),
    }
}

fn partner(name: &str) -> NewPartner {
    NewPartner {
        kind: Some(PartnerKind::School),
        name: name.into(),
        ..Default::default()
    }
}

/// Runs one future to its end on the pool, the scheduler serving its requests.
fn run<T: 'static>(
    sim: &Sim,
    pool: &mut LocalPool,
    future: impl Future<Output = T> + 'static,
) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    pool.spawner()
        .spawn_local(async move {
            *slot.borrow_mut() = Some(future.await);
        })
        .unwrap();
    sim.drive(pool, NONE);
    out.borrow_mut()
        .take()
        .expect("the future waits on nothing")
}

/// Tempdirs on tmpfs where there is one: a thousand practices' fsyncs cost nothing there.
fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// The practice every run starts from: an owner, an admin and three members, synced.
fn practice(sim_rng_seed: u64) -> (Sim, Practice) {
    let relay_dir = tempdir();
    let data = DataDir::init(relay_dir.path(), "127.0.0.1:4433").unwrap();
    let relay = data.store().unwrap();
    let keep: Vec<tempfile::TempDir> = (0..DEVICES).map(|_| tempdir()).collect();
    let dirs: Vec<PathBuf> = keep.iter().map(|d| d.path().to_path_buf()).collect();
    let owner = Home::open(&dirs[0]).unwrap();
    owner
        .create_practice("Simulated Practice", "Owner")
        .unwrap();
    let shared = owner.add_partner(partner("Shared Partner")).unwrap().id;
    let mut sim = Sim {
        rng: RefCell::new(StdRng::seed_from_u64(sim_rng_seed)),
        wire: Arc::default(),
        relay: relay.clone(),
        ids: vec![owner.device_identity().unwrap().device_id()],
        notices: RefCell::new(vec![Vec::new(); DEVICES]),
        crashed: RefCell::default(),
        trace: RefCell::default(),
        unexpected: RefCell::default(),
    };
    let mut pool = LocalPool::new();
    let setup = SetupCode::decode(&data.new_setup_code(&relay).unwrap().encode()).unwrap();
    let owner = Rc::new(owner);
    {
        let (owner, link) = (owner.clone(), link(&sim, 0));
        run(&sim, &mut pool, async move {
            sync::connect::connect_practice_via(&owner, &link, &setup)
                .await
                .unwrap()
        });
    }
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let role = if i == 1 { Role::Admin } else { Role::Member };
        let code = {
            let (owner, link) = (owner.clone(), link(&sim, 0));
            run(&sim, &mut pool, async move {
                sync::invite::create_invite_via(&owner, &link, role, 3600)
                    .await
                    .unwrap()
            })
        };
        let joiner = Rc::new(Home::open(dir).unwrap());
        // The relay learns who is asking from the connection; a joiner's identity exists
        // before it joins.
        sim.ids.push(joiner.device_identity().unwrap().device_id());
        let link = link(&sim, i);
        let home = joiner.clone();
        run(&sim, &mut pool, async move {
            sync::join::join_via(
                &home,
                &link,
                &InviteCode::decode(&code).unwrap(),
                &format!("Clinician {i}"),
                &|_, _| {},
            )
            .await
            .unwrap()
        });
    }
    for (i, dir) in dirs.iter().enumerate() {
        let home = Rc::new(Home::open(dir).unwrap());
        let link = link(&sim, i);
        run(&sim, &mut pool, async move {
            sync::round(&home, &link).await.unwrap()
        });
    }
    sim.notices.get_mut().iter_mut().for_each(Vec::clear);
    sim.trace.get_mut().clear();
    let space = SpaceId::parse(&owner.space_id(SpaceKind::Practice).unwrap()).unwrap();
    let ids = sim.ids.clone();
    (
        sim,
        Practice {
            relay,
            dirs,
            ids,
            space,
            shared,
            _keep: keep,
        },
    )
}

/// Each device's script: edits, rounds, notices, and for the owner and the admin an
/// invite and the removal of a member (each removes a different one, or both the same).
fn scripts(rng: &mut StdRng) -> Vec<Vec<Step>> {
    (0..DEVICES)
        .map(|device| {
            let mut steps: Vec<Step> = (0..STEPS)
                .map(|_| match rng.random_range(0..10) {
                    0..=2 => Step::AddPartner,
                    3 => Step::EditShared,
                    4..=6 => Step::Round,
                    _ => Step::Deliver,
                })
                .collect();
            if device < 2 {
                let at = rng.random_range(0..steps.len());
                steps.insert(at, Step::Remove(rng.random_range(2..DEVICES)));
                if rng.random_bool(0.5) {
                    let at = rng.random_range(0..steps.len());
                    steps.insert(at, Step::Invite);
                }
            }
            steps
        })
        .collect()
}

/// What the devices did that must survive.
#[derive(Default)]
struct Outcomes {
    /// Partners each device added (ids).
    added: Vec<Vec<String>>,
}

/// What a device's task works with.
struct DeviceRun {
    dir: PathBuf,
    device: usize,
    link: SimLink,
    script: Rc<Vec<Step>>,
    /// The step to take next; survives a crash.
    next: Rc<Cell<usize>>,
    /// The partner every device edits.
    shared: String,
    space: SpaceId,
    sim: Rc<Sim>,
    outcomes: Rc<RefCell<Outcomes>>,
}

/// A device's task: its script from `next` on, with its home opened from disk (again,
/// after a crash).
async fn device_task(run: DeviceRun) {
    let DeviceRun {
        dir,
        device,
        link,
        script,
        next,
        shared,
        space,
        sim,
        outcomes,
    } = run;
    let home = Home::open(&dir).unwrap();
    while next.get() < script.len() {
        let index = next.get();
        // Moved on before the step runs: a crash in it skips it, as a user's lost action.
        next.set(index + 1);
        let result: Result<(), rapport_core::Error> = match script[index] {
            Step::AddPartner => home
                .add_partner(partner(&format!("Partner {device}-{index}")))
                .map(|p| outcomes.borrow_mut().added[device].push(p.id)),
            Step::EditShared => home
                .edit_partner(
                    &shared,
                    PartnerEdit {
                        organization: Some(format!("Edited by {device} at {index}")),
                        ..Default::default()
                    },
                )
                .map(drop),
            Step::Round => sync::round(&home, &link).await.map(drop),
            Step::Deliver => {
                let mut delivered = std::mem::take(&mut sim.notices.borrow_mut()[device]);
                {
                    let mut rng = sim.rng.borrow_mut();
                    // Late, out of order, and some twice.
                    for i in (1..delivered.len()).rev() {
                        let j = rng.random_range(0..=i);
                        delivered.swap(i, j);
                    }
                    let twice: Vec<_> = delivered
                        .iter()
                        .filter(|_| rng.random_bool(0.3))
                        .cloned()
                        .collect();
                    delivered.extend(twice);
                }
                let mut report = SyncReport::default();
                let mut result = Ok(());
                for (space, entry) in delivered {
                    if let Err(e) =
                        sync::apply_delivered(&home, &link, space, &entry, &mut report).await
                    {
                        result = Err(e);
                        break;
                    }
                }
                result
            }
            Step::Remove(target) => {
                let target = sim.ids[target].to_string();
                sync::devices::remove_device_via(&home, &link, &target)
                    .await
                    .map(drop)
            }
            Step::Invite => sync::invite::create_invite_via(&home, &link, Role::Member, 3600)
                .await
                .map(drop),
        };
        if let Err(e) = result {
            let line = format!("device {device} step {index} {:?}: {e}", script[index]);
            // A step may fail because its device was removed or its connection dropped
            // (the next round finishes what it started); anything else is a bug.
            let removed = sim
                .relay
                .log_state(space)
                .is_ok_and(|log| log.removed.contains_key(&sim.ids[device]));
            let expected = match e.sync_failure() {
                Some(rapport_core::SyncFailure::Network) => true,
                Some(rapport_core::SyncFailure::Removed | rapport_core::SyncFailure::NotMember) => {
                    removed
                }
                _ => false,
            };
            if !expected {
                sim.unexpected.borrow_mut().push(line.clone());
            }
            sim.trace.borrow_mut().push(line);
        }
    }
}

/// One run. Returns the trace on failure.
fn simulate(seed: u64) -> Result<(), String> {
    let (sim, practice) = practice(seed);
    let sim = Rc::new(sim);
    let scripts: Vec<Rc<Vec<Step>>> = scripts(&mut sim.rng.borrow_mut())
        .into_iter()
        .map(Rc::new)
        .collect();
    let progress: Vec<Rc<Cell<usize>>> = (0..DEVICES).map(|_| Rc::new(Cell::new(0))).collect();
    let outcomes = Rc::new(RefCell::new(Outcomes {
        added: vec![Vec::new(); DEVICES],
    }));
    let mut pool = LocalPool::new();
    let mut handles: Vec<Option<AbortHandle>> = vec![None; DEVICES];
    let spawn = |pool: &mut LocalPool, device: usize| {
        let (handle, registration) = AbortHandle::new_pair();
        let task = device_task(DeviceRun {
            dir: practice.dirs[device].clone(),
            device,
            link: link(&sim, device),
            script: scripts[device].clone(),
            next: progress[device].clone(),
            shared: practice.shared.clone(),
            space: practice.space,
            sim: sim.clone(),
            outcomes: outcomes.clone(),
        });
        pool.spawner()
            .spawn_local(async move {
                let _ = Abortable::new(task, registration).await;
            })
            .unwrap();
        handle
    };
    for (device, handle) in handles.iter_mut().enumerate() {
        *handle = Some(spawn(&mut pool, device));
    }
    let faults = Faults {
        crash: 0.02,
        lose_answer: 0.03,
        duplicate_write: 0.05,
    };
    loop {
        sim.drive(&mut pool, faults);
        let crashed: Vec<usize> = std::mem::take(&mut *sim.crashed.borrow_mut());
        if crashed.is_empty() {
            break;
        }
        for device in crashed {
            if let Some(handle) = handles[device].take() {
                handle.abort();
            }
            // Dropped (its home closed) before it starts again.
            pool.run_until_stalled();
            handles[device] = Some(spawn(&mut pool, device));
        }
    }

    // The devices left settle: rounds in turn, no faults.
    let log = practice.relay.log_state(practice.space).unwrap();
    let left: Vec<usize> = (0..DEVICES)
        .filter(|d| log.is_member(practice.ids[*d]))
        .collect();
    let mut last = Vec::new();
    for pass in 0..4 {
        for &device in &left {
            let home = Rc::new(Home::open(&practice.dirs[device]).unwrap());
            let link = link(&sim, device);
            let report = run(
                &sim,
                &mut pool,
                async move { sync::round(&home, &link).await },
            )
            .map_err(|e| format!("device {device} could not settle: {e}"))?;
            if pass == 3 {
                last.push((device, report));
            }
        }
    }
    if std::env::var_os("RAPPORT_SIM_TRACE").is_some() {
        eprintln!(
            "seed {seed}: left {left:?}, log {} ops at epoch {}\n  {}",
            log.len,
            log.epoch,
            sim.trace.borrow().join("\n  ")
        );
    }
    let unexpected = sim.unexpected.borrow().join("; ");
    let checked = if unexpected.is_empty() {
        check(&practice, &left, &last, &outcomes.borrow())
    } else {
        Err(format!("steps failed for no fault's reason: {unexpected}"))
    };
    checked.map_err(|failure| {
        format!(
            "seed {seed}: {failure}\nscripts: {:?}\ntrace:\n  {}",
            scripts,
            sim.trace.borrow().join("\n  ")
        )
    })
}

fn check(
    practice: &Practice,
    left: &[usize],
    last: &[(usize, SyncReport)],
    outcomes: &Outcomes,
) -> Result<(), String> {
    let log = practice.relay.log_state(practice.space).unwrap();
    if left.len() < 3 || !left.contains(&0) || !left.contains(&1) {
        return Err(format!("the owner, the admin and a member stay: {left:?}"));
    }
    for (device, report) in last {
        if !report.rejected.is_empty() || !report.withheld.is_empty() || report.held > 0 {
            return Err(format!("device {device} settled with {report:?}"));
        }
    }
    let homes: Vec<(usize, Home)> = (0..DEVICES)
        .map(|d| (d, Home::open(&practice.dirs[d]).unwrap()))
        .collect();
    let (_, first) = &homes[left[0]];
    let heads = first.heads(SpaceKind::Practice).unwrap();
    let model = first.read_model_dump().unwrap();
    let mut keys: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
    for (device, home) in &homes {
        if !left.contains(device) {
            // Removed: it holds no key of the current epoch.
            if home
                .space_key(SpaceKind::Practice, log.epoch)
                .unwrap()
                .is_some()
            {
                return Err(format!("removed device {device} holds the current key"));
            }
            continue;
        }
        if home.heads(SpaceKind::Practice).unwrap() != heads {
            return Err(format!("device {device}'s document differs"));
        }
        if home.read_model_dump().unwrap() != model {
            return Err(format!("device {device}'s read model differs"));
        }
        let verified = home.membership(SpaceKind::Practice).unwrap().unwrap();
        if verified.head != log.head || verified.epoch != log.epoch {
            return Err(format!(
                "device {device} verified log {} at epoch {}, the relay's is {} at {}",
                verified.len, verified.epoch, log.len, log.epoch
            ));
        }
        for key in home.space_keys(SpaceKind::Practice).unwrap() {
            let bytes = *key.bytes();
            if *keys.entry(key.epoch).or_insert(bytes) != bytes {
                return Err(format!("two keys for epoch {}", key.epoch));
            }
        }
        if !keys.contains_key(&log.epoch) {
            return Err(format!("device {device} lacks the current key"));
        }
        for added in outcomes
            .added
            .iter()
            .enumerate()
            .filter(|(d, _)| left.contains(d))
        {
            for id in added.1 {
                if home.partner(id).is_err() {
                    return Err(format!(
                        "device {device} lacks partner {id} that device {} added",
                        added.0
                    ));
                }
            }
        }
    }
    Ok(())
}

fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("RAPPORT_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let count = std::env::var("RAPPORT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    (0..count).collect()
}

#[test]
fn a_thousand_practices_with_racing_removals_crashes_and_shuffled_deliveries_converge() {
    let seeds = seeds();
    let started = std::time::Instant::now();
    // Two workers (the machine has two cores); each run is single-threaded and its
    // schedule depends on its seed only.
    let (left, right): (Vec<u64>, Vec<u64>) = seeds.iter().partition(|s| *s % 2 == 0);
    let workers: Vec<_> = [left, right]
        .into_iter()
        .map(|seeds| {
            std::thread::spawn(move || {
                seeds
                    .into_iter()
                    .filter_map(|seed| simulate(seed).err())
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    eprintln!(
        "{} simulated practices in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} runs failed (replay one with RAPPORT_SIM_SEED=n):\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n\n")
    );
}
