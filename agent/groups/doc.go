// Package groups is Floe's consumer group coordinator: the classic group
// protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), KIP-848 consumer
// groups (ConsumerGroupHeartbeat with server-side assignment), committed
// offsets (OffsetCommit, OffsetFetch, OffsetDelete, DeleteGroups) and the
// group admin APIs (FindCoordinator, ListGroups, DescribeGroups,
// ConsumerGroupDescribe), for the versions Kafka 4.1 serves (see APIs).
//
// Where state lives. Each group is coordinated by one agent, which
// Placement names (the agent hashes the group id over the live agents).
// Membership, generations, epochs and assignments live in that agent's
// memory; committed offsets live in the catalog; and each group's state is
// also stored in the catalog (catalog.SaveGroupState, an opaque versioned
// blob; state.go is its format), as Kafka stores group metadata in
// __consumer_offsets:
//   - a classic group's stable state — generation, protocol type and
//     protocol, leader, and each member's ids, client id and host, timeouts,
//     protocols and assignment — when a rebalance completes (the leader's
//     SyncGroup, answered only after the write, as Kafka answers only after
//     its log write) and when a static member is replaced without a
//     rebalance;
//   - a KIP-848 group's epochs, assignor, target assignment and members
//     (epochs, reconcile state, subscriptions, owned and revoking
//     partitions) whenever a ConsumerGroupHeartbeat changed them, before it
//     is answered, and after a timer removed a member;
//   - removed when the group becomes empty. Never on a heartbeat that
//     changes nothing.
//
// When a group moves to another agent (its coordinator died, was stopped or
// the fleet changed), the new coordinator loads that state before it
// answers any request for the group, once however many requests arrive,
// giving every member a fresh session (now + its session timeout): members
// heartbeat on with their generation or epoch and their partitions, and
// their commits naming it are accepted — no rebalance. Members that died
// meanwhile expire by their session timeout, which rebalances as usual.
// A coordinator that dies without draining (SIGKILL, a lost machine) is
// different for some clients: franz-go ends its group session when a
// heartbeat cannot even connect, and rejoins; the rebalance that follows
// starts from the stored state, with every member known, so members
// rejoin together rather than the first one taking every partition. (An
// agent stopped with SIGTERM deregisters first: members get
// NOT_COORDINATOR, which every client follows without ending its session.)
//
// Stored state is written with compare-and-set on its version: an agent
// whose view of a group is stale (two agents briefly both believed they
// coordinated it) gets a conflict at its next write and drops the group,
// whose members find the coordinator again and get the stored state. A
// coordinator that loads a state stores it again under a new version
// before serving it, so that one still holding the group from before
// (paused past its TTL, its view not yet refreshed) is fenced at its next
// write even if the new one has not written since. After
// the fleet view changes (Placement implementing ViewEpocher), a group
// held in memory is checked against the stored version once, so a group
// that moved away and back is not served from stale memory. A state that
// cannot be loaded (the catalog fails) is answered COORDINATOR_NOT_AVAILABLE,
// which clients retry; one that cannot be decoded (another Floe version,
// damage) is logged and the group starts empty, as before state was
// stored.
//
// Guarantees:
//   - An OffsetCommit, OffsetDelete or DeleteGroups response without an
//     error code is sent only after the catalog call that stores the change
//     has returned nil: an acknowledged commit survives any agent.
//   - A request for a group this agent does not coordinate (per Placement)
//     gets NOT_COORDINATOR and changes nothing.
//   - While Placement fails (the agent cannot coordinate: its lease in the
//     catalog lapsed), every group request gets COORDINATOR_NOT_AVAILABLE
//     (FindCoordinator names no node) and changes nothing, and the groups
//     in memory are dropped once Run learns of it (ViewChanged, or the next
//     ownership check): they are loaded from the catalog when placement
//     is back.
//   - While Placement names this node with ErrJoining (the agent joined
//     the fleet too recently), the group's requests get
//     COORDINATOR_LOAD_IN_PROGRESS (as in Kafka while it loads a group,
//     a Heartbeat gets no error and a SyncGroup REBALANCE_IN_PROGRESS)
//     and change nothing, and FindCoordinator names this node.
//   - The committed offsets of a group without stored state (no members)
//     expire Config.OffsetsRetention after its last commit or after it
//     lost its last member, whichever is later; the groups
//     placed on this node whose stored state it does not hold are loaded
//     at each retention check even if no member asks (retention.go), so
//     an abandoned group's members expire and its state and offsets go.
//   - Commits are fenced like Kafka's: a classic member must name the
//     current generation and a member of it (ILLEGAL_GENERATION,
//     UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID otherwise); a KIP-848 member
//     must name its epoch (STALE_MEMBER_EPOCH). A group without members
//     accepts commits with generation -1 and no member id ("simple"
//     consumers such as kcat or manual franz-go commits).
//   - Memory is bounded: members per group (GroupMaxSize), groups in memory
//     (MaxGroups), metadata per member (MaxMetadataBytes) and in total
//     (MaxTotalMetadataBytes). Exceeding a bound is a Kafka error, never an
//     allocation.
//   - A classic group's SyncGroup, and a ConsumerGroupHeartbeat that
//     changed its group, are answered only after the catalog call storing
//     the group's new state returned (a failed write fails the SyncGroups
//     into a rebalance; a KIP-848 answer stands); a write that failed is
//     tried again by the group's next requests and timers, at most once
//     a heartbeat interval, until it is stored; a group loaded by a new
//     coordinator is the last stored state.
//   - Handle is safe for concurrent use. Each group has its own mutex, and
//     no lock is held across a catalog call or while a JoinGroup or
//     SyncGroup waits for the rebalance. (A group's saves are serialized by
//     a semaphore taken before, never while holding, its mutex; a load runs
//     before the group is in memory.)
//
// Differences from Kafka 4.1, all deliberate:
//   - Group state is stored in the catalog as one blob per group, not as
//     records in a log: there is no __consumer_offsets topic.
//   - A group that is mid-rebalance when its coordinator moves comes back
//     at its last stored (stable) generation, as Kafka's does; a group whose
//     state exceeds catalog.MaxGroupStateBytes is not stored (logged) and
//     rebalances after a move. A loaded group keeps all its stored members
//     even above this agent's GroupMaxSize.
//   - A group is either classic or KIP-848 at a time, and only an empty
//     group converts: a ConsumerGroupHeartbeat for a classic group with
//     members gets GROUP_ID_NOT_FOUND (Kafka's behaviour with
//     group.consumer.migration.policy=disabled), and a JoinGroup for a
//     KIP-848 group with members gets INCONSISTENT_GROUP_PROTOCOL, where
//     Kafka 4 admits the classic member into the consumer group under
//     every policy (the policy governs only converting a non-empty group).
//   - FindCoordinator for transactions answers
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED with a message (this package
//     has no transaction coordinator), so transactional producers fail at
//     once, and for share groups INVALID_REQUEST.
//   - An OffsetCommit from a KIP-848 member with an older epoch is accepted
//     when every committed partition is still owned by that member (what
//     Kafka 4.3 relaxed, KIP-1251), instead of STALE_MEMBER_EPOCH.
//   - An OffsetCommit naming a generation for a group this coordinator has
//     no members for (its state was too large to store, or undecodable)
//     gets ILLEGAL_GENERATION at every version, so clients rejoin.
//   - A ConsumerGroupHeartbeat with an epoch for a group this coordinator
//     does not know gets UNKNOWN_MEMBER_ID (Kafka: GROUP_ID_NOT_FOUND), so a
//     member that followed a coordinator move rejoins instead of failing.
//   - A KIP-848 subscription regex longer than 4 KiB gets
//     INVALID_REGULAR_EXPRESSION.
//   - There are no transactional offsets, so RequireStable never waits.
//   - The uniform and range assignors balance by partition count and ignore
//     racks.
package groups
