// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title DAO interface
/// @notice Token-weighted governance over hubs. Voters escrow SNM behind their vote for the
///         length of the proposal (so a token cannot vote twice) and reclaim it afterwards.
///         A proposal passes when, at the end of the voting period, for > against and
///         for + against >= quorum; anyone may then execute it once. The DAO also receives
///         payday fees and confiscated hub funds.
/// @dev Self-contained on purpose: the Rust bindings read this file with `sol!`.
interface IDAO {
    enum Action {
        Suspect,
        Rehab,
        Gulag,
        Trust,
        Untrust,
        Deregister
    }

    struct Proposal {
        Action action;
        /// HubWallet the action is about.
        address hub;
        address proposer;
        uint40 endsAt;
        bool executed;
        uint128 forVotes;
        uint128 againstVotes;
    }

    /// @notice A proposal was created; voting runs until `endsAt`.
    event ProposalCreated(
        uint256 indexed id,
        address indexed proposer,
        Action action,
        address indexed hub,
        uint256 endsAt
    );
    /// @notice `voter` escrowed `weight` SNM for or against.
    event Voted(uint256 indexed id, address indexed voter, bool support, uint256 weight);
    /// @notice The action was carried out on its target.
    event ProposalExecuted(uint256 indexed id);
    /// @notice `voter` took back its escrowed SNM.
    event VotesReclaimed(uint256 indexed id, address indexed voter, uint256 amount);

    /// @notice No proposal with this id.
    error UnknownProposal(uint256 id);
    /// @notice Voting has ended.
    error VotingClosed(uint256 endsAt);
    /// @notice Voting has not ended yet.
    error VotingOpen(uint256 endsAt);
    /// @notice The proposal did not pass.
    error NotPassed(uint256 forVotes, uint256 againstVotes, uint256 quorum);
    /// @notice The proposal was already executed.
    error AlreadyExecuted(uint256 id);
    /// @notice Zero vote weight, zero hub address, or nothing to reclaim.
    error InvalidArgument();

    /// @notice Opens a vote on `action` against `hub`. Anyone.
    function propose(Action action, address hub) external returns (uint256 id);
    /// @notice Escrows `weight` SNM from the caller as votes for or against. Needs allowance.
    function vote(uint256 id, bool support, uint256 weight) external;
    /// @notice Carries out a passed proposal after its voting period. Anyone, once.
    function execute(uint256 id) external;
    /// @notice Returns the caller's escrowed votes once voting has ended.
    function reclaim(uint256 id) external;

    /// @notice Proposal `id`.
    function proposal(uint256 id) external view returns (Proposal memory);
    /// @notice SNM `voter` escrowed on proposal `id` and not yet reclaimed.
    function deposit(uint256 id, address voter) external view returns (uint256);
    /// @notice True if voting ended with the proposal passing (executed or not).
    function passed(uint256 id) external view returns (bool);
    /// @notice Number of proposals created; ids are 0..count-1.
    function proposalCount() external view returns (uint256);
    /// @notice Seconds a vote stays open.
    function votingPeriod() external view returns (uint256);
    /// @notice Minimum for + against weight for a proposal to pass.
    function quorum() external view returns (uint256);
    /// @notice SNM token.
    function token() external view returns (address);
    /// @notice Whitelist the trust and deregister actions apply to.
    function whitelist() external view returns (address);
    /// @notice HubFactory the DAO deployed at construction (it created the whitelist).
    function factory() external view returns (address);
    /// @notice SNM held by the DAO beyond escrowed votes (fees and confiscations).
    function treasury() external view returns (uint256);
}
