// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IHubWallet} from "./interfaces/IHubWallet.sol";
import {ISNM} from "./interfaces/ISNM.sol";
import {IWhitelist} from "./interfaces/IWhitelist.sol";

/// @title HubWallet
/// @notice A hub's purse and its on-chain reputation state machine (see IHubWallet).
/// @dev Deployed once as an implementation; every hub is an EIP-1167 clone of it, so the
///      system addresses are immutables shared by all clones and only the per-hub word below
///      lives in the clone's storage. Frozen funds are an SNM lock on the wallet, and miner
///      payouts are SNM reserved allowances: neither the owner nor a miner's pull can ever
///      touch frozen funds, and a payout, once made, is always pullable.
contract HubWallet is IHubWallet {
    /// @notice Fixed registration freeze: 1 SNM.
    uint256 public constant REGISTRATION_FREEZE = 1e18;
    /// @notice Share of every payout frozen on top of it, in percent.
    uint256 public constant LOCK_PERCENT = 30;
    /// @notice Share of frozen funds paid to the DAO at payday, in basis points (0.5%).
    uint256 public constant DAO_FEE_BPS = 50;
    /// @notice Length of a payout period.
    uint256 public constant PAYOUT_PERIOD = 30 days;
    /// @notice Minimum time between suspicion and gulag.
    uint256 public constant SUSPICION_PERIOD = 120 days;

    /// @inheritdoc IHubWallet
    address public immutable token;
    /// @inheritdoc IHubWallet
    address public immutable dao;
    /// @inheritdoc IHubWallet
    address public immutable whitelist;
    /// @inheritdoc IHubWallet
    address public immutable factory;

    /// @dev Everything a clone stores, packed in one slot.
    struct Slot {
        address owner;
        State state;
        uint40 periodStart;
        uint40 suspectedAt;
    }

    Slot private _s;

    constructor(address token_, address dao_, address whitelist_, address factory_) {
        token = token_;
        dao = dao_;
        whitelist = whitelist_;
        factory = factory_;
        // The implementation itself must never be initialised or used.
        _s.state = State.Punished;
    }

    modifier onlyDAO() {
        if (msg.sender != dao) revert NotDAO(msg.sender);
        _;
    }

    /// @inheritdoc IHubWallet
    function initialize(address owner_) external {
        if (msg.sender != factory) revert NotFactory(msg.sender);
        if (_s.owner != address(0) || _s.state != State.Created) revert AlreadyInitialized();
        if (owner_ == address(0)) revert InvalidArgument();
        _s.owner = owner_;
    }

    /// @inheritdoc IHubWallet
    function register() external {
        Slot memory s = _s;
        if (msg.sender != factory) _checkOwner(s);
        if (s.state != State.Created && s.state != State.Idle) revert WrongState(s.state);
        if (!IWhitelist(whitelist).isListed(address(this))) revert NotListed();
        uint256 free = ISNM(token).spendableOf(address(this));
        if (free < REGISTRATION_FREEZE) revert InsufficientFunds(free, REGISTRATION_FREEZE);
        ISNM(token).lock(REGISTRATION_FREEZE);
        _s.periodStart = uint40(block.timestamp);
        _setState(s.state, State.Registered);
        emit HubRegistered(s.owner, REGISTRATION_FREEZE, block.timestamp + PAYOUT_PERIOD);
    }

    /// @inheritdoc IHubWallet
    function transfer(address miner, uint256 amount) external {
        if (amount == 0) revert InvalidArgument();
        uint256 lockFee = _checkPayout(amount);
        address[] memory miners = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        miners[0] = miner;
        amounts[0] = amount;
        ISNM(token).approveReserved(miners, amounts);
        _freeze(1, amount, lockFee);
    }

    /// @inheritdoc IHubWallet
    function transferBatch(address[] calldata miners, uint256[] calldata amounts) external {
        uint256 n = miners.length;
        if (n == 0 || n != amounts.length) revert LengthMismatch();
        uint256 total;
        for (uint256 i; i < n; ++i) {
            if (amounts[i] == 0) revert InvalidArgument();
            total += amounts[i];
        }
        uint256 lockFee = _checkPayout(total);
        // Calldata goes straight through to SNM: no per-miner copies or events here.
        ISNM(token).approveReserved(miners, amounts);
        _freeze(n, total, lockFee);
    }

    /// @inheritdoc IHubWallet
    function payDay() external {
        Slot memory s = _s;
        _checkOwner(s);
        if (s.state != State.Registered) revert WrongState(s.state);
        uint256 endsAt = uint256(s.periodStart) + PAYOUT_PERIOD;
        if (block.timestamp < endsAt) revert PeriodNotOver(endsAt);
        uint256 frozen = ISNM(token).lockedOf(address(this));
        uint256 fee = frozen * DAO_FEE_BPS / 10_000;
        ISNM(token).unlock(frozen);
        if (fee != 0) ISNM(token).transfer(dao, fee);
        _setState(State.Registered, State.Idle);
        emit PaidDay(fee, frozen - fee);
    }

    /// @inheritdoc IHubWallet
    function withdraw(uint256 amount) external {
        Slot memory s = _s;
        _checkOwner(s);
        // Created is included so funds sent to a wallet that never registered are not stuck.
        if (s.state != State.Idle && s.state != State.Created) revert WrongState(s.state);
        if (amount == 0) revert InvalidArgument();
        // SNM refuses to move reserved payouts, so miners keep what they were paid.
        ISNM(token).transfer(s.owner, amount);
        emit Withdrawn(s.owner, amount);
    }

    /// @inheritdoc IHubWallet
    function suspect() external onlyDAO {
        State st = _s.state;
        if (st != State.Registered) revert WrongState(st);
        uint256 free = ISNM(token).spendableOf(address(this));
        if (free != 0) ISNM(token).lock(free);
        _s.suspectedAt = uint40(block.timestamp);
        _setState(st, State.Suspected);
        emit HubSuspected(ISNM(token).lockedOf(address(this)), block.timestamp + SUSPICION_PERIOD);
    }

    /// @inheritdoc IHubWallet
    function rehab() external onlyDAO {
        State st = _s.state;
        if (st != State.Suspected) revert WrongState(st);
        uint256 frozen = ISNM(token).lockedOf(address(this));
        if (frozen != 0) ISNM(token).unlock(frozen);
        _setState(st, State.Idle);
        emit HubRehabilitated(frozen);
    }

    /// @inheritdoc IHubWallet
    function gulag() external onlyDAO {
        Slot memory s = _s;
        if (s.state != State.Suspected) revert WrongState(s.state);
        uint256 endsAt = uint256(s.suspectedAt) + SUSPICION_PERIOD;
        if (block.timestamp < endsAt) revert SuspicionNotOver(endsAt);
        uint256 frozen = ISNM(token).lockedOf(address(this));
        if (frozen != 0) ISNM(token).unlock(frozen);
        _setState(State.Suspected, State.Punished);
        // Reserved payouts were earned by miners before the suspicion and stay pullable.
        _confiscate();
    }

    /// @inheritdoc IHubWallet
    function sweep() external {
        State st = _s.state;
        if (st != State.Punished) revert WrongState(st);
        _confiscate();
    }

    /// @inheritdoc IHubWallet
    function state() external view returns (State) {
        return _s.state;
    }

    /// @inheritdoc IHubWallet
    function owner() external view returns (address) {
        return _s.owner;
    }

    /// @inheritdoc IHubWallet
    function periodStart() external view returns (uint256) {
        return _s.periodStart;
    }

    /// @inheritdoc IHubWallet
    function suspectedAt() external view returns (uint256) {
        return _s.suspectedAt;
    }

    /// @inheritdoc IHubWallet
    function frozenFunds() external view returns (uint256) {
        return ISNM(token).lockedOf(address(this));
    }

    /// @inheritdoc IHubWallet
    function spendable() external view returns (uint256) {
        return ISNM(token).spendableOf(address(this));
    }

    /// @dev Owner only, Registered only. Spendable funds (everything not yet frozen or
    ///      reserved, so the 1 SNM registration freeze is already excluded) must cover the
    ///      payouts plus the 30% lock fee frozen on top of them.
    function _checkPayout(uint256 total) private view returns (uint256 lockFee) {
        Slot memory s = _s;
        _checkOwner(s);
        if (s.state != State.Registered) revert WrongState(s.state);
        lockFee = total * LOCK_PERCENT / 100;
        uint256 free = ISNM(token).spendableOf(address(this));
        if (free < total + lockFee) revert InsufficientFunds(free, total + lockFee);
    }

    function _freeze(uint256 miners, uint256 total, uint256 lockFee) private {
        if (lockFee != 0) ISNM(token).lock(lockFee);
        emit MinersPaid(miners, total, lockFee);
    }

    function _confiscate() private {
        uint256 amount = ISNM(token).spendableOf(address(this));
        if (amount != 0) ISNM(token).transfer(dao, amount);
        emit Confiscated(amount);
    }

    /// @dev The owner is blocked for good once the hub is punished.
    function _checkOwner(Slot memory s) private view {
        if (msg.sender != s.owner || s.state == State.Punished) revert NotOwner(msg.sender);
    }

    function _setState(State from, State to) private {
        _s.state = to;
        emit StateChanged(from, to, block.timestamp);
    }
}
