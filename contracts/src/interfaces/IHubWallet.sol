// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Hub wallet interface
/// @notice A hub's on-chain purse. States: Created -> Registered -> Idle (after payday or
///         rehab) -> Registered again; Registered -> Suspected (DAO) -> Idle (rehab) or
///         Punished (gulag). Frozen funds are held as an SNM lock on the wallet itself.
/// @dev Self-contained on purpose: the Rust bindings read this file with `sol!`.
interface IHubWallet {
    enum State {
        Created,
        Registered,
        Idle,
        Suspected,
        Punished
    }

    /// @notice Every state transition, with the time it happened.
    event StateChanged(State indexed from, State indexed to, uint256 at);
    /// @notice The wallet froze the registration deposit and opened a payout period.
    event HubRegistered(address indexed owner, uint256 frozen, uint256 periodEnd);
    /// @notice Paid `miners` miners `total` in all and froze `lockFee` on top. Each miner's
    ///         share is in the SNM `Reserved(wallet, miner, amount)` event; the miner pulls
    ///         it with SNM `transferFrom`.
    event MinersPaid(uint256 miners, uint256 total, uint256 lockFee);
    /// @notice Payday: `daoFee` went to the DAO and `released` was unfrozen.
    event PaidDay(uint256 daoFee, uint256 released);
    /// @notice The owner took `amount` out of an idle wallet.
    event Withdrawn(address indexed to, uint256 amount);
    /// @notice The DAO suspected the hub; all spendable funds were frozen until `gulagAfter`.
    event HubSuspected(uint256 frozenTotal, uint256 gulagAfter);
    /// @notice The DAO cleared the hub; `released` was unfrozen.
    event HubRehabilitated(uint256 released);
    /// @notice Funds sent to the DAO: at gulag, or swept later from a punished wallet.
    event Confiscated(uint256 amount);

    /// @notice Caller is not the wallet owner (or the owner is blocked).
    error NotOwner(address caller);
    /// @notice Caller is not the DAO.
    error NotDAO(address caller);
    /// @notice Caller is not the factory that created the wallet.
    error NotFactory(address caller);
    /// @notice The call is not allowed in the wallet's current state.
    error WrongState(State current);
    /// @notice The payout period has not ended yet.
    error PeriodNotOver(uint256 endsAt);
    /// @notice The suspicion period has not ended yet.
    error SuspicionNotOver(uint256 endsAt);
    /// @notice Spendable funds do not cover payouts plus their lock fee.
    error InsufficientFunds(uint256 spendable, uint256 needed);
    /// @notice The hub is not listed in the whitelist.
    error NotListed();
    /// @notice Array arguments differ in length.
    error LengthMismatch();
    /// @notice A zero amount or zero address where one is not meaningful.
    error InvalidArgument();
    /// @notice The clone was already initialised.
    error AlreadyInitialized();

    /// @notice Sets the owner of a freshly cloned wallet. Factory only, once.
    function initialize(address owner) external;
    /// @notice Created or Idle -> Registered: freezes 1 SNM and starts a 30-day payout period.
    ///         Owner or factory; the hub must be listed in the whitelist.
    function register() external;
    /// @notice Pays `miner` `amount` by reserved allowance and freezes 30% of it on top.
    ///         Owner only, Registered only.
    function transfer(address miner, uint256 amount) external;
    /// @notice Pays many miners at once; freezes 30% of the batch total on top.
    ///         Owner only, Registered only.
    function transferBatch(address[] calldata miners, uint256[] calldata amounts) external;
    /// @notice After the payout period: 0.5% of frozen funds to the DAO, the rest unfrozen,
    ///         state Idle. Owner only.
    function payDay() external;
    /// @notice Sends `amount` to the owner. Idle only.
    function withdraw(uint256 amount) external;
    /// @notice Registered -> Suspected: freezes every spendable token. DAO only.
    function suspect() external;
    /// @notice Suspected -> Idle: unfreezes everything. DAO only.
    function rehab() external;
    /// @notice Suspected -> Punished after 120 days of suspicion: frozen and spendable funds
    ///         go to the DAO and the owner is blocked. DAO only.
    function gulag() external;
    /// @notice Punished only: forwards funds that arrived after gulag to the DAO. Anyone.
    function sweep() external;

    /// @notice Current state.
    function state() external view returns (State);
    /// @notice Hub operator; blocked once Punished.
    function owner() external view returns (address);
    /// @notice Start of the current payout period (0 before the first registration).
    function periodStart() external view returns (uint256);
    /// @notice When the DAO suspected the hub (0 if never).
    function suspectedAt() external view returns (uint256);
    /// @notice Funds frozen in the wallet (SNM-locked).
    function frozenFunds() external view returns (uint256);
    /// @notice Funds the owner can still use for payouts or withdrawal.
    function spendable() external view returns (uint256);
    /// @notice SNM token.
    function token() external view returns (address);
    /// @notice DAO allowed to suspect, rehab and gulag.
    function dao() external view returns (address);
    /// @notice Factory that created the wallet.
    function factory() external view returns (address);
    /// @notice Whitelist the hub is listed in.
    function whitelist() external view returns (address);
}
