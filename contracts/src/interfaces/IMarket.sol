// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Market interface
/// @notice Escrowed deals between a buyer and a hub. The buyer deposits the price; the hub
///         commits the result digest before the deadline; the buyer confirms, or anyone
///         settles once the confirmation window has passed. Uncommitted deals are refunded
///         when the hub releases them, or on the buyer's cancel after the deadline or once
///         the hub is no longer active.
/// @dev Only a hash of each open deal is stored, and the slots of closed deals are reused
///      by later ones; callers pass the `Deal` back, as emitted in `DealsOpened` (with
///      `committedAt` from `ResultsCommitted`). A deal id is unique for all time: its low
///      64 bits name the storage slot, the high bits are the deal's serial number.
///      Self-contained on purpose: the Rust bindings read this file with `sol!`.
interface IMarket {
    struct Deal {
        address buyer;
        /// HubWallet that does the work and receives the price.
        address hub;
        uint96 price;
        /// Last moment the hub may commit a result.
        uint40 deadline;
        /// When the hub committed; 0 while open.
        uint40 committedAt;
    }

    enum Outcome {
        Confirmed,
        TimedOut,
        Cancelled,
        Released
    }

    /// @notice Deals `ids[i]` with price `prices[i]` were opened and escrowed.
    /// @dev One event per batch (not per deal) keeps batched opens cheap.
    event DealsOpened(
        address indexed buyer, address indexed hub, uint40 deadline, uint256[] ids, uint96[] prices
    );
    /// @notice The hub committed `digests[i]` (sha256 of the result bundle, or a Merkle root)
    ///         for deal `ids[i]`; the deals' `committedAt` is now `committedAt`.
    event ResultsCommitted(
        address indexed hub, uint40 committedAt, uint256[] ids, bytes32[] digests
    );
    /// @notice The deals ended: the price went to the hub wallet (Confirmed, TimedOut) or back
    ///         to the buyer (Cancelled, Released).
    event DealsClosed(Outcome indexed outcome, uint256[] ids);

    /// @notice No open deal with this id and these terms.
    error UnknownDeal(uint256 id);
    /// @notice Caller is not the deal's buyer.
    error NotBuyer(address caller);
    /// @notice Caller is not the owner of the deal's hub wallet.
    error NotHubOwner(address caller);
    /// @notice The hub is not listed or its wallet is not Registered.
    error HubNotActive(address hub);
    /// @notice Zero price or a deadline that is not in the future.
    error InvalidTerms();
    /// @notice The commit deadline has passed.
    error DeadlinePassed(uint256 deadline);
    /// @notice The deal already has a committed result.
    error AlreadyCommitted(uint256 id);
    /// @notice The deal has no committed result yet.
    error NotCommitted(uint256 id);
    /// @notice The buyer may still confirm until `until`.
    error ConfirmWindowOpen(uint256 until);
    /// @notice The hub may still commit and is active: the buyer cannot cancel yet.
    error CancelNotAllowed(uint256 id);
    /// @notice Array arguments differ in length, or a batch is empty.
    error BadBatch();

    /// @notice Opens one deal with `hub`, pulling `price` SNM from the caller.
    function openDeal(address hub, uint96 price, uint40 deadline) external returns (uint256 id);
    /// @notice Opens one deal per price with the same hub and deadline. One SNM pull for the
    ///         whole batch.
    function openDeals(address hub, uint96[] calldata prices, uint40 deadline)
        external
        returns (uint256[] memory ids);
    /// @notice Commits result digests for open deals of one hub the caller owns, before
    ///         their deadlines.
    function commitResults(
        uint256[] calldata ids,
        Deal[] calldata deals,
        bytes32[] calldata digests
    ) external;
    /// @notice Buyer accepts committed results; each hub is paid its deals' prices.
    function confirmDeals(uint256[] calldata ids, Deal[] calldata deals) external;
    /// @notice Anyone pays hubs for committed deals whose confirmation window has passed.
    function settleDeals(uint256[] calldata ids, Deal[] calldata deals) external;
    /// @notice Buyer takes back an uncommitted deal once past its deadline or while the hub
    ///         is not active.
    function cancelDeal(uint256 id, Deal calldata deal) external;
    /// @notice Hub owner declines an uncommitted deal; the buyer is refunded.
    function releaseDeal(uint256 id, Deal calldata deal) external;

    /// @notice True while deal `id` is open (committed or not) with exactly these terms.
    function isOpen(uint256 id, Deal calldata deal) external view returns (bool);
    /// @notice The hash the market stores for deal `id` with these terms.
    function hashDeal(uint256 id, Deal calldata deal) external pure returns (bytes32);
    /// @notice Number of deals ever opened.
    function dealCount() external view returns (uint256);
    /// @notice Seconds after a commit during which only the buyer can close the deal.
    function confirmWindow() external view returns (uint256);
    /// @notice SNM token.
    function token() external view returns (address);
    /// @notice Whitelist consulted for hub activity.
    function whitelist() external view returns (address);
}
