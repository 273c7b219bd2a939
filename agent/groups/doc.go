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
// memory only; committed offsets live in the catalog. When a group moves to
// another agent (its coordinator died or the fleet changed), its members
// get NOT_COORDINATOR, find the new coordinator, rejoin from scratch and
// read their committed offsets from the catalog, so nothing committed is
// lost.
//
// Guarantees:
//   - An OffsetCommit, OffsetDelete or DeleteGroups response without an
//     error code is sent only after the catalog call that stores the change
//     has returned nil: an acknowledged commit survives any agent.
//   - A request for a group this agent does not coordinate (per Placement)
//     gets NOT_COORDINATOR and changes nothing.
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
//   - Handle is safe for concurrent use. Each group has its own mutex, and
//     no lock is held across a catalog call or while a JoinGroup or
//     SyncGroup waits for the rebalance.
//
// Differences from Kafka 4.1, all deliberate:
//   - Group state is not persisted: a new coordinator starts every group
//     empty (generation 0) and members rejoin. Offsets are never lost.
//   - A group is either classic or KIP-848 at a time: a JoinGroup for a
//     KIP-848 group with members gets INCONSISTENT_GROUP_PROTOCOL, a
//     ConsumerGroupHeartbeat for a classic group with members gets
//     GROUP_ID_NOT_FOUND (Kafka's behaviour with
//     group.consumer.migration.policy=disabled). An empty group converts.
//   - FindCoordinator for transactions answers
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED with a message (this package
//     has no transaction coordinator), so transactional producers fail at
//     once, and for share groups INVALID_REQUEST.
//   - An OffsetCommit from a KIP-848 member with an older epoch is accepted
//     when every committed partition is still owned by that member (what
//     Kafka 4.3 relaxed, KIP-1251), instead of STALE_MEMBER_EPOCH.
//   - An OffsetCommit naming a generation for a group this coordinator has
//     no members for gets ILLEGAL_GENERATION at every version, so classic
//     and KIP-848 clients alike rejoin after a coordinator move.
//   - A ConsumerGroupHeartbeat with an epoch for a group this coordinator
//     does not know gets UNKNOWN_MEMBER_ID (Kafka: GROUP_ID_NOT_FOUND), so a
//     member that followed a coordinator move rejoins instead of failing.
//   - A KIP-848 subscription regex longer than 4 KiB gets
//     INVALID_REGULAR_EXPRESSION.
//   - There are no transactional offsets, so RequireStable never waits.
//   - The uniform and range assignors balance by partition count and ignore
//     racks.
package groups
