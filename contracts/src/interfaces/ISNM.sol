// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title SNM token interface
/// @notice ERC-20 (18 decimals) plus two extensions that HubWallet relies on:
///         a holder may lock part of its own balance (frozen funds nobody can move), and
///         may reserve allowances (payouts a spender is guaranteed to be able to pull).
/// @dev Self-contained on purpose: the Rust bindings read this file with `sol!`.
interface ISNM {
    /// @notice ERC-20 transfer, including mints from and burns to the zero address.
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice ERC-20 allowance change; `value` is the new allowance.
    event Approval(address indexed owner, address indexed spender, uint256 value);
    /// @notice `holder` locked `amount` of its own balance.
    event Locked(address indexed holder, uint256 amount, uint256 lockedTotal);
    /// @notice `holder` released `amount` of its locked balance.
    event Unlocked(address indexed holder, uint256 amount, uint256 lockedTotal);
    /// @notice `owner` raised `spender`'s allowance by `amount` and reserved it. Emitted
    ///         instead of `Approval` by `approveReserved`, to keep batch payouts cheap.
    event Reserved(address indexed owner, address indexed spender, uint256 amount);

    /// @notice The account does not hold `needed` spendable (unlocked, unreserved) tokens.
    error SNMInsufficientBalance(address holder, uint256 spendable, uint256 needed);
    /// @notice The spender's allowance is below `needed`.
    error SNMInsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    /// @notice Tokens cannot be sent to or approved for the zero address.
    error SNMZeroAddress();
    /// @notice An allowance cannot be lowered below the part that is reserved.
    error SNMAllowanceReserved(address spender, uint256 reserved, uint256 requested);
    /// @notice Unlocking more than the holder has locked.
    error SNMUnlockExceedsLocked(uint256 locked, uint256 requested);
    /// @notice Array arguments differ in length.
    error SNMLengthMismatch();

    /// @notice Token name.
    function name() external view returns (string memory);
    /// @notice Token symbol.
    function symbol() external view returns (string memory);
    /// @notice Always 18.
    function decimals() external view returns (uint8);
    /// @notice Fixed supply minted to the genesis holder at deployment.
    function totalSupply() external view returns (uint256);
    /// @notice Full balance, including locked and reserved tokens.
    function balanceOf(address account) external view returns (uint256);
    /// @notice Allowance of `spender` over `owner`'s tokens (max uint256 means unlimited).
    function allowance(address owner, address spender) external view returns (uint256);
    /// @notice Moves `value` of the caller's spendable tokens to `to`.
    function transfer(address to, uint256 value) external returns (bool);
    /// @notice Sets the caller's allowance for `spender`; cannot go below its reserved part.
    function approve(address spender, uint256 value) external returns (bool);
    /// @notice Moves `value` from `from` to `to` using the caller's allowance; reserved
    ///         allowance is spent first and releases the owner's reservation.
    function transferFrom(address from, address to, uint256 value) external returns (bool);

    /// @notice Tokens `holder` locked itself; they cannot leave the account until unlocked.
    function lockedOf(address holder) external view returns (uint256);
    /// @notice Tokens `owner` reserved for its spenders and not yet pulled.
    function reservedOf(address owner) external view returns (uint256);
    /// @notice Reserved part of `spender`'s allowance over `owner`.
    function reservedFor(address owner, address spender) external view returns (uint256);
    /// @notice Balance minus locked and reserved tokens: what `holder` can still move.
    function spendableOf(address holder) external view returns (uint256);
    /// @notice Locks `amount` of the caller's spendable tokens.
    function lock(uint256 amount) external;
    /// @notice Releases `amount` of the caller's locked tokens.
    function unlock(uint256 amount) external;
    /// @notice For each i, raises `spenders[i]`'s allowance by `amounts[i]` and reserves
    ///         that much of the caller's spendable tokens so the spender can always pull it.
    function approveReserved(address[] calldata spenders, uint256[] calldata amounts) external;
}
