// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Verification interface
/// @notice Miners stake SNM and sign their result digest for each work unit (EIP-712
///         `Result(address hub,bytes32 unit,uint16 replicas,bytes32 digest)`). When replicas
///         disagree, anyone posts the signed results: the digest signed by a strict majority
///         of the unit's `replicas` wins, every miner that signed another digest loses its
///         whole stake, `proverShareBps` of it goes to the caller and the rest to the DAO.
///         Stakes are returned after an unbonding period in which they stay slashable.
/// @dev Self-contained on purpose: the Rust bindings read this file with `sol!`.
interface IVerification {
    struct Attestation {
        address miner;
        bytes32 digest;
        bytes signature;
    }

    /// @notice `miner` added `amount`; its stake is now `total`.
    event Staked(address indexed miner, uint256 amount, uint256 total);
    /// @notice `miner` asked for its stake back; it can withdraw from `unlockAt`.
    event UnbondingStarted(address indexed miner, uint256 unlockAt);
    /// @notice `miner` withdrew `amount`.
    event StakeWithdrawn(address indexed miner, uint256 amount);
    /// @notice A work unit's conflict was settled in favour of `digest`.
    event DisputeResolved(
        bytes32 indexed unitKey, address indexed hub, bytes32 unit, bytes32 digest, address prover
    );
    /// @notice `miner` lost `amount`; `reward` of it went to the prover.
    event Slashed(address indexed miner, bytes32 indexed unitKey, uint256 amount, uint256 reward);

    /// @notice Zero amount.
    error ZeroAmount();
    /// @notice Constructor parameter out of range (prover share above 100%).
    error InvalidConfig();
    /// @notice Cannot add stake while unbonding.
    error Unbonding(uint256 unlockAt);
    /// @notice Withdraw needs a started, elapsed unbonding.
    error NotUnlocked(uint256 unlockAt);
    /// @notice The caller has no stake.
    error NoStake();
    /// @notice This work unit was already resolved.
    error AlreadyResolved(bytes32 unitKey);
    /// @notice The attestations are not a conflict with a strict majority of `replicas`.
    error NoMajority();
    /// @notice Attestation `index` is not signed by its miner.
    error BadSignature(uint256 index);
    /// @notice Attestations must be sorted by strictly increasing miner address.
    error UnsortedMiners(uint256 index);
    /// @notice More attestations than replicas, or fewer than two.
    error BadAttestationCount();

    /// @notice Adds `amount` SNM to the caller's stake. Needs allowance.
    function stake(uint256 amount) external;
    /// @notice Starts the unbonding period for the caller's whole stake.
    function startUnbonding() external;
    /// @notice Returns the caller's stake once unbonded.
    function withdraw() external;
    /// @notice Resolves conflicting results for `unit` of `hub` and slashes the minority.
    function challenge(
        address hub,
        bytes32 unit,
        uint16 replicas,
        Attestation[] calldata attestations
    ) external;

    /// @notice Stake of `miner` and when it unlocks (0 while bonded).
    function stakeOf(address miner) external view returns (uint256 amount, uint256 unlockAt);
    /// @notice The EIP-712 digest a miner signs for its result.
    function resultHash(address hub, bytes32 unit, uint16 replicas, bytes32 digest)
        external
        view
        returns (bytes32);
    /// @notice Key of a work unit: keccak256(abi.encode(hub, unit)).
    function unitKey(address hub, bytes32 unit) external pure returns (bytes32);
    /// @notice True once the unit's conflict was resolved.
    function resolved(bytes32 unitKey) external view returns (bool);
    /// @notice Seconds between `startUnbonding` and `withdraw`.
    function unbondingPeriod() external view returns (uint256);
    /// @notice Share of a slashed stake paid to the prover, in basis points.
    function proverShareBps() external view returns (uint256);
    /// @notice SNM token.
    function token() external view returns (address);
    /// @notice DAO receiving the rest of slashed stakes.
    function dao() external view returns (address);
}
