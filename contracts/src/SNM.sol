// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ISNM} from "./interfaces/ISNM.sol";

/// @title SNM, the sosna settlement token
/// @notice Fixed-supply ERC-20 with holder-controlled locks and reserved allowances.
/// @dev Balance, and everything encumbered (locked + reserved), share one storage slot, so an
///      ordinary transfer reads and writes a single slot per party, like a plain ERC-20.
contract SNM is ISNM {
    /// @dev Allowances at or above this are unlimited and never decremented.
    uint128 private constant UNLIMITED = type(uint128).max;

    struct Account {
        uint128 balance;
        /// locked + reserved: the part of `balance` the holder cannot move itself.
        uint128 encumbered;
    }

    struct Allowance {
        uint128 amount;
        /// Part of `amount` backed by the owner's reservation.
        uint128 reserved;
    }

    /// @inheritdoc ISNM
    uint256 public immutable totalSupply;

    mapping(address => Account) private _accounts;
    mapping(address => uint256) private _reserved;
    mapping(address => mapping(address => Allowance)) private _allowances;

    /// @param genesisHolder receives the whole supply
    /// @param supply total supply in wei (fits in 128 bits)
    constructor(address genesisHolder, uint128 supply) {
        if (genesisHolder == address(0)) revert SNMZeroAddress();
        totalSupply = supply;
        _accounts[genesisHolder].balance = supply;
        emit Transfer(address(0), genesisHolder, supply);
    }

    /// @inheritdoc ISNM
    function name() external pure returns (string memory) {
        return "Sosna Network Money";
    }

    /// @inheritdoc ISNM
    function symbol() external pure returns (string memory) {
        return "SNM";
    }

    /// @inheritdoc ISNM
    function decimals() external pure returns (uint8) {
        return 18;
    }

    /// @inheritdoc ISNM
    function balanceOf(address account) external view returns (uint256) {
        return _accounts[account].balance;
    }

    /// @inheritdoc ISNM
    function allowance(address owner, address spender) external view returns (uint256) {
        uint128 amount = _allowances[owner][spender].amount;
        return amount == UNLIMITED ? type(uint256).max : amount;
    }

    /// @inheritdoc ISNM
    function lockedOf(address holder) public view returns (uint256) {
        return _accounts[holder].encumbered - _reserved[holder];
    }

    /// @inheritdoc ISNM
    function reservedOf(address owner) external view returns (uint256) {
        return _reserved[owner];
    }

    /// @inheritdoc ISNM
    function reservedFor(address owner, address spender) external view returns (uint256) {
        return _allowances[owner][spender].reserved;
    }

    /// @inheritdoc ISNM
    function spendableOf(address holder) public view returns (uint256) {
        Account storage a = _accounts[holder];
        return a.balance - a.encumbered;
    }

    /// @inheritdoc ISNM
    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value, 0);
        return true;
    }

    /// @inheritdoc ISNM
    function approve(address spender, uint256 value) external returns (bool) {
        if (spender == address(0)) revert SNMZeroAddress();
        Allowance storage al = _allowances[msg.sender][spender];
        if (value < al.reserved) revert SNMAllowanceReserved(spender, al.reserved, value);
        al.amount = value >= UNLIMITED ? UNLIMITED : _u128(value);
        emit Approval(msg.sender, spender, value);
        return true;
    }

    /// @inheritdoc ISNM
    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        Allowance memory cur = _allowances[from][msg.sender];
        // Reserved allowance is spent first.
        uint128 released = cur.reserved < value ? cur.reserved : _u128(value);
        uint128 amount = cur.amount;
        if (amount != UNLIMITED) {
            if (amount < value) revert SNMInsufficientAllowance(msg.sender, amount, value);
            amount -= _u128(value);
        }
        if (released != 0) _reserved[from] -= released;
        if (amount != cur.amount || released != 0) {
            _allowances[from][msg.sender] = Allowance(amount, cur.reserved - released);
        }
        _move(from, to, value, released);
        return true;
    }

    /// @inheritdoc ISNM
    function lock(uint256 amount) external {
        Account storage a = _accounts[msg.sender];
        uint256 spendable = a.balance - a.encumbered;
        if (amount > spendable) revert SNMInsufficientBalance(msg.sender, spendable, amount);
        a.encumbered += _u128(amount);
        emit Locked(msg.sender, amount, a.encumbered - _reserved[msg.sender]);
    }

    /// @inheritdoc ISNM
    function unlock(uint256 amount) external {
        uint256 locked = lockedOf(msg.sender);
        if (amount > locked) revert SNMUnlockExceedsLocked(locked, amount);
        _accounts[msg.sender].encumbered -= _u128(amount);
        emit Unlocked(msg.sender, amount, locked - amount);
    }

    /// @inheritdoc ISNM
    function approveReserved(address[] calldata spenders, uint256[] calldata amounts) external {
        uint256 n = spenders.length;
        if (n != amounts.length) revert SNMLengthMismatch();
        uint256 total;
        for (uint256 i; i < n; ++i) {
            address spender = spenders[i];
            if (spender == address(0)) revert SNMZeroAddress();
            uint256 amount = amounts[i];
            total += amount;
            Allowance memory al = _allowances[msg.sender][spender];
            // Checked arithmetic: the total is bounded by the balance check below, and a
            // single huge amount overflows uint128 here instead of wrapping.
            uint128 newAmount = al.amount == UNLIMITED ? UNLIMITED : al.amount + _u128(amount);
            _allowances[msg.sender][spender] = Allowance(newAmount, al.reserved + _u128(amount));
            emit Reserved(msg.sender, spender, amount);
        }
        Account storage a = _accounts[msg.sender];
        uint256 spendable = a.balance - a.encumbered;
        if (total > spendable) revert SNMInsufficientBalance(msg.sender, spendable, total);
        a.encumbered += _u128(total);
        _reserved[msg.sender] += total;
    }

    /// @dev Moves `value` from `from`, of which `released` was just released from its
    ///      reservation (so it is spendable for this move only).
    function _move(address from, address to, uint256 value, uint128 released) private {
        if (to == address(0)) revert SNMZeroAddress();
        Account memory s = _accounts[from];
        uint256 spendable = s.balance - (s.encumbered - released);
        if (value > spendable) revert SNMInsufficientBalance(from, spendable, value);
        uint128 v = _u128(value);
        _accounts[from] = Account(s.balance - v, s.encumbered - released);
        // Cannot overflow: the whole supply fits in 128 bits.
        _accounts[to].balance += v;
        emit Transfer(from, to, value);
    }

    /// @dev Amounts above 2^128 exceed any balance, so they fail as an insufficient balance.
    function _u128(uint256 v) private view returns (uint128) {
        if (v > type(uint128).max) {
            revert SNMInsufficientBalance(msg.sender, spendableOf(msg.sender), v);
        }
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint128(v);
    }
}
